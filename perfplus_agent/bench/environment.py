"""The facts a benchmark figure depends on, recorded next to it."""

from __future__ import annotations

import os
import platform
import subprocess
import time

import libvirt

__all__ = ["environment"]


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "unavailable"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else ""


def environment() -> dict[str, object]:
    """Machine, kernel and versions of QEMU, libvirt and Python."""
    major, rest = divmod(libvirt.getVersion(), 1_000_000)
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "qemu": _first_line(["qemu-system-x86_64", "--version"]),
        "libvirt": f"{major}.{rest // 1000}.{rest % 1000}",
    }
