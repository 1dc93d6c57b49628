"""Finding a simulated host's processes (its QEMUs, its daemons) from the machine, for the
faults the lab injects: every process of a host lives in the host's network namespace."""

from __future__ import annotations

from pathlib import Path

from perfplus_agent.lab import netns
from perfplus_agent.lab.layout import HostLayout

__all__ = ["daemon_pid", "pids_named", "qemu_pid"]


def _cmdline(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def qemu_pid(host: HostLayout, vm: str) -> int | None:
    """The QEMU that runs guest ``vm`` on ``host`` (an incoming migration's too), if any."""
    needle = f"guest={vm},".encode()
    for pid in netns.pids_in_netns(host.netns):
        cmd = _cmdline(pid)
        if cmd and b"qemu-system" in cmd[0] and needle in b" ".join(cmd):
            return pid
    return None


def pids_named(host: HostLayout, comm: str, prefix: bool = False) -> list[int]:
    """Processes of ``host`` whose command name is ``comm`` (or starts with it)."""
    found = []
    for pid in netns.pids_in_netns(host.netns):
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if name == comm or (prefix and name.startswith(comm)):
            found.append(pid)
    return found


def daemon_pid(host: HostLayout) -> int | None:
    """The host's Perf+ migration daemon (the serving process, not a client command)."""
    for pid in netns.pids_in_netns(host.netns):
        if b"\0".join(_cmdline(pid)[1:5]).endswith(b"perfplus_agent.cli\0daemon\0--listen"):
            return pid
    return None
