"""Find and stop a domain's QEMU process without libvirt: the fallback when libvirtd does
not answer. Only processes of this node's PID namespace are visible, as it should be."""

from __future__ import annotations

import contextlib
import re
import time

import psutil

__all__ = ["find_qemu", "kill_qemu"]


def _matches(cmdline: list[str], name: str) -> bool:
    for i, arg in enumerate(cmdline[:-1]):
        if arg == "-name":
            value = cmdline[i + 1]
            if value == name or re.search(rf"(^|,)guest={re.escape(name)}(,|$)", value):
                return True
    return False


def find_qemu(name: str) -> list[int]:
    """PIDs of QEMU processes running domain ``name``."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            cmd = proc.info["cmdline"] or []
            if cmd and "qemu" in (proc.info["name"] or "") and _matches(cmd, name):
                found.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def kill_qemu(name: str, grace_s: float = 5.0) -> bool:
    """SIGTERM, then SIGKILL after ``grace_s``; True when no process of ``name`` is left."""
    procs = [psutil.Process(p) for p in find_qemu(name) if psutil.pid_exists(p)]
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _gone, alive = psutil.wait_procs(procs, timeout=grace_s)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)
    deadline = time.monotonic() + 5
    while find_qemu(name) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not find_qemu(name)
