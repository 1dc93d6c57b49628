"""The lab guest's domain XML and the initramfs module order."""

from pathlib import Path

from lxml import etree

from perfplus_agent import perfplus_c
from perfplus_agent.lab.guest_xml import GuestSpec, guest_xml
from perfplus_agent.lab.image import module_order


def spec(**kw):
    base = dict(name="vm1", memory_mib=256, ip="10.77.0.100", kernel="/k", initrd="/i",
                emulator="/venv/bin/qemu-system-x86_64-tcgfix")
    base.update(kw)
    return GuestSpec(**base)


def test_guest_xml_describes_the_guest():
    root = etree.fromstring(guest_xml(spec(workload="-m 64 -r 2000")).encode())
    assert root.get("type") == "qemu"
    assert root.findtext("memory") == str(256 * 1024)
    assert root.findtext("devices/emulator").endswith("qemu-system-x86_64-tcgfix")
    cmdline = root.findtext("os/cmdline")
    assert "perfplus.ip=10.77.0.100/24" in cmdline
    assert "perfplus.dirtier=-m,64,-r,2000" in cmdline
    assert root.find("devices/interface/source").get("bridge") == "br0"
    assert root.findtext("on_crash") == "destroy"


def test_guest_identity_is_stable_and_distinct():
    assert spec().mac == spec().mac
    assert spec().uuid != spec(name="vm2").uuid
    # the MAC follows the address (reused after a guest is gone: ARP caches stay right)
    assert spec().mac == spec(name="vm2").mac == "52:54:00:4d:00:64"
    assert spec(ip="10.77.0.101").mac != spec().mac


def test_module_order_puts_dependencies_first(tmp_path: Path):
    (tmp_path / "modules.dep").write_text(
        "kernel/a/virtio_net.ko: kernel/b/net_failover.ko kernel/c/failover.ko kernel/v/virtio.ko\n"
        "kernel/b/net_failover.ko: kernel/c/failover.ko\n"
        "kernel/c/failover.ko:\n"
        "kernel/v/virtio.ko:\n"
        "kernel/v/virtio_pci.ko: kernel/v/virtio.ko\n"
    )
    order = [p.name for p in module_order(tmp_path, ("virtio_pci", "virtio_net"))]
    assert order == ["virtio.ko", "virtio_pci.ko", "failover.ko", "net_failover.ko",
                     "virtio_net.ko"]
    assert module_order(tmp_path, ("builtin_thing",)) == []


def test_c_extension_is_built():
    assert (perfplus_c.PAGE_SIZE, perfplus_c.TAG_SIZE) == (4096, 16)
