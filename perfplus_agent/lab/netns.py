"""Network namespaces: create, list, delete, and the processes living in one."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from perfplus_agent.proc import run

__all__ = [
    "NETNS_DIR", "add", "delete", "exists", "kill_all", "listing", "pid_in_netns", "pids_in_netns",
]

NETNS_DIR = Path("/run/netns")


def listing() -> list[str]:
    """Names of all named network namespaces on the machine."""
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir())
    except FileNotFoundError:
        return []


def exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def add(name: str) -> None:
    run(["ip", "netns", "add", name])
    run(["ip", "-n", name, "link", "set", "lo", "up"])


def delete(name: str) -> None:
    """Delete ``name``; a namespace that is already gone is fine."""
    if exists(name):
        run(["ip", "netns", "del", name])


def pid_in_netns(pid: int, name: str) -> bool:
    """Whether process ``pid`` lives in namespace ``name`` (guards against recycled PIDs)."""
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(NETNS_DIR / name).st_ino
    except OSError:
        return False


def pids_in_netns(name: str) -> list[int]:
    """Every process currently in namespace ``name``."""
    try:
        ino = os.stat(NETNS_DIR / name).st_ino
    except OSError:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}/ns/net").st_ino == ino:
                    found.append(int(entry))
            except OSError:
                continue
    return found


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie waiting for its parent."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def kill_all(name: str, timeout: float = 10.0) -> None:
    """SIGKILL every process in namespace ``name`` until none is left running."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in pids_in_netns(name) if _alive(p)]
        if not alive:
            return
        if time.monotonic() > deadline:
            raise OSError(f"processes in netns {name} survive SIGKILL: {alive}")
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
