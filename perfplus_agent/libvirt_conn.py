"""Opening libvirt connections with errors that say which daemon did not answer."""

from __future__ import annotations

import libvirt

from perfplus_agent.errors import PerfplusError

__all__ = ["LibvirtUnreachable", "open_connection", "quiet_libvirt"]


class LibvirtUnreachable(PerfplusError):
    """A libvirt daemon could not be reached."""


def _ignore(_ctx: object, _err: object) -> None:
    """libvirt prints every error on stderr by default; we raise them instead."""


def quiet_libvirt() -> None:
    libvirt.registerErrorHandler(_ignore, None)


def open_connection(uri: str) -> libvirt.virConnect:
    """Open ``uri`` read-write; LibvirtUnreachable with libvirt's reason on failure."""
    quiet_libvirt()
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise LibvirtUnreachable(f"cannot connect to libvirt at {uri}: {exc}") from None
