"""The libvirt domain XML of a lab guest: a kernel+initramfs guest with no disk, one virtio
NIC on the host's LAN bridge, and a serial console that is both a socket and a log file."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from lxml import etree

__all__ = ["GuestSpec", "console_log_path", "guest_xml", "serial_socket_path"]

PULSE_PORT = 7000


def serial_socket_path(name: str) -> str:
    """The serial console socket, as the host sees it."""
    return f"/var/lib/libvirt/qemu/{name}.serial"


def console_log_path(name: str) -> str:
    """The serial console log, as the host sees it."""
    return f"/var/log/libvirt/qemu/{name}.console.log"


@dataclass(frozen=True)
class GuestSpec:
    """Everything that defines a lab guest."""

    name: str
    memory_mib: int
    ip: str
    kernel: str
    initrd: str
    emulator: str
    domain_type: str = "qemu"  # "kvm" where KVM works
    vcpus: int = 1
    workload: str | None = None  # dirtier arguments, e.g. "-m 64 -r 2000 -s 0.5"
    lan_prefix: int = 24
    power_button: bool = True  # False: the guest ignores graceful shutdown requests

    @property
    def uuid(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{self.name}.guest.perfplus.lab"))

    @property
    def mac(self) -> str:
        """Derived from the address, which the lab hands out again after a guest is gone:
        a LAN client's ARP cache entry for a reused address stays right."""
        octets = [int(part) for part in self.ip.split(".")]
        return "52:54:00:" + ":".join(f"{b:02x}" for b in octets[1:])

    @property
    def cmdline(self) -> str:
        parts = ["console=ttyS0", "panic=-1", "quiet", f"perfplus.ip={self.ip}/{self.lan_prefix}",
                 f"perfplus.pulse={PULSE_PORT}"]
        if self.workload:
            parts.append("perfplus.dirtier=" + ",".join(self.workload.split()))
        if not self.power_button:
            parts.append("perfplus.acpid=0")
        return " ".join(parts)


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    el = etree.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = text
    return el


def guest_xml(spec: GuestSpec) -> str:
    """The domain XML for ``spec``."""
    dom = etree.Element("domain", type=spec.domain_type)
    _sub(dom, "name", spec.name)
    _sub(dom, "uuid", spec.uuid)
    _sub(dom, "memory", str(spec.memory_mib * 1024), unit="KiB")
    _sub(dom, "vcpu", str(spec.vcpus))
    os_el = _sub(dom, "os")
    _sub(os_el, "type", "hvm", arch="x86_64", machine="pc")
    _sub(os_el, "kernel", spec.kernel)
    _sub(os_el, "initrd", spec.initrd)
    _sub(os_el, "cmdline", spec.cmdline)
    # ACPI gives the guest a power button: a graceful shutdown request then works.
    _sub(_sub(dom, "features"), "acpi")
    # A guest that crashes or reboots must end visibly, never come back as a fresh boot.
    for event in ("on_poweroff", "on_reboot", "on_crash"):
        _sub(dom, event, "destroy")
    dev = _sub(dom, "devices")
    _sub(dev, "emulator", spec.emulator)
    nic = _sub(dev, "interface", type="bridge")
    _sub(nic, "source", bridge="br0")
    _sub(nic, "mac", address=spec.mac)
    _sub(nic, "model", type="virtio")
    serial = _sub(dev, "serial", type="unix")
    _sub(serial, "source", mode="bind", path=serial_socket_path(spec.name))
    _sub(serial, "log", file=console_log_path(spec.name), append="on")
    _sub(serial, "target", port="0")
    _sub(dev, "controller", type="usb", model="none")
    _sub(dev, "memballoon", model="none")
    return etree.tostring(dom, pretty_print=True, encoding="unicode")
