"""Files a simulated host needs before its init starts: private directories and the lab's
libvirt configuration (a copy of the machine's, with the lab's settings appended)."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from perfplus_agent.lab.layout import PRIVATE_DIRS, HostLayout

__all__ = ["prepare_host_dirs"]

SYSTEM_LIBVIRT = Path("/etc/libvirt")


def _libvirtd_conf(host: HostLayout) -> str:
    # TCP without authentication is acceptable here only because the address exists solely on
    # the lab's own migration network, reachable from the lab's namespaces and nowhere else.
    host_uuid = uuid.uuid5(uuid.NAMESPACE_DNS, f"{host.lab}.{host.name}.perfplus.lab")
    return f"""
# --- perfplus lab ({host.lab}/{host.name}) ---
listen_tls = 0
listen_tcp = 1
listen_addr = "{host.mig_addr}"
auth_tcp = "none"
auth_unix_rw = "none"
auth_unix_ro = "none"
host_uuid = "{host_uuid}"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""


def _qemu_conf(host: HostLayout) -> str:
    # No systemd, cgroups, virtlogd or per-domain /dev here; QEMU runs as root in the host.
    return f"""
# --- perfplus lab ({host.lab}/{host.name}) ---
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
stdio_handler = "file"
cgroup_controllers = [ ]
namespaces = [ ]
migration_address = "{host.mig_addr}"
migration_host = "{host.mig_addr}"
"""


def prepare_host_dirs(host: HostLayout) -> None:
    """Create the host's private directories and write its libvirt configuration."""
    for _inside, sub in PRIVATE_DIRS:
        (host.dir / sub).mkdir(parents=True, exist_ok=True)
    etc = host.dir / "etc-libvirt"
    shutil.copytree(SYSTEM_LIBVIRT, etc, dirs_exist_ok=True, symlinks=True)
    # No autostarted networks (no dnsmasq here), no domains or pools of the machine.
    for pattern in ("qemu/networks/autostart/*", "qemu/*.xml", "storage/autostart/*"):
        for path in etc.glob(pattern):
            path.unlink()
    with open(etc / "libvirtd.conf", "a") as fh:
        fh.write(_libvirtd_conf(host))
    with open(etc / "qemu.conf", "a") as fh:
        fh.write(_qemu_conf(host))
    for inside in ("/var/log/libvirt/qemu", "/var/lib/libvirt/qemu", "/var/cache/libvirt/qemu"):
        host.path(inside).mkdir(parents=True, exist_ok=True)
