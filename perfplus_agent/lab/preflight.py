"""What the lab needs from the machine, checked before anything is built.

Each requirement names the Debian package that provides it, so a missing one is reported as
"install X", never as a traceback halfway through ``lab up``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass

from perfplus_agent.errors import UsageError

__all__ = ["CLUSTER_TOOLS", "IMAGE_TOOLS", "LAB_TOOLS", "Tool", "require", "require_root"]


@dataclass(frozen=True)
class Tool:
    """A program the lab runs, and the Debian package that ships it."""

    command: str
    package: str


LAB_TOOLS: tuple[Tool, ...] = (
    Tool("ip", "iproute2"),
    Tool("tc", "iproute2"),
    Tool("unshare", "util-linux"),
    Tool("nsenter", "util-linux"),
    Tool("mount", "mount"),
    Tool("libvirtd", "libvirt-daemon-system"),
    Tool("virsh", "libvirt-clients"),
    Tool("qemu-system-x86_64", "qemu-system-x86"),
)

CLUSTER_TOOLS: tuple[Tool, ...] = (
    Tool("corosync", "corosync"),
    Tool("corosync-keygen", "corosync"),
    Tool("pacemakerd", "pacemaker"),
    Tool("cibadmin", "pacemaker-cli-utils"),
    Tool("crm_mon", "pacemaker-cli-utils"),
    Tool("crm", "crmsh"),
    Tool("pcs", "pcs"),
)

IMAGE_TOOLS: tuple[Tool, ...] = (
    Tool("gcc", "gcc"),
    Tool("cpio", "cpio"),
    Tool("gzip", "gzip"),
)


def require_root(what: str = "the lab") -> None:
    """UsageError unless we are root."""
    if os.geteuid() != 0:
        raise UsageError(
            f"{what} needs root: it creates network namespaces and runs libvirtd and QEMU; "
            "run it as root"
        )


def require(tools: Iterable[Tool]) -> None:
    """UsageError naming every missing program and its Debian package."""
    missing = [t for t in tools if shutil.which(t.command) is None]
    if missing:
        names = ", ".join(t.command for t in missing)
        packages = " ".join(sorted({t.package for t in missing}))
        raise UsageError(f"missing {names}: install the Debian package(s) {packages}")
