"""``migrate_options``: the ``virsh migrate`` options of an upstream configuration, turned
into libvirt migration flags and parameters (so they keep their meaning), or a clear error."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

import libvirt

from perfplus_agent.ocf.exitcodes import OcfError, OcfExit

__all__ = ["MigrateOptions", "parse_migrate_options"]

FLAGS = {
    "--live": libvirt.VIR_MIGRATE_LIVE,
    "--p2p": libvirt.VIR_MIGRATE_PEER2PEER,
    "--tunnelled": libvirt.VIR_MIGRATE_TUNNELLED,
    "--persistent": libvirt.VIR_MIGRATE_PERSIST_DEST,
    "--undefinesource": libvirt.VIR_MIGRATE_UNDEFINE_SOURCE,
    "--suspend": libvirt.VIR_MIGRATE_PAUSED,
    "--copy-storage-all": libvirt.VIR_MIGRATE_NON_SHARED_DISK,
    "--copy-storage-inc": libvirt.VIR_MIGRATE_NON_SHARED_INC,
    "--change-protection": libvirt.VIR_MIGRATE_CHANGE_PROTECTION,
    "--unsafe": libvirt.VIR_MIGRATE_UNSAFE,
    "--compressed": libvirt.VIR_MIGRATE_COMPRESSED,
    "--abort-on-error": libvirt.VIR_MIGRATE_ABORT_ON_ERROR,
    "--auto-converge": libvirt.VIR_MIGRATE_AUTO_CONVERGE,
    "--rdma-pin-all": libvirt.VIR_MIGRATE_RDMA_PIN_ALL,
    "--postcopy": libvirt.VIR_MIGRATE_POSTCOPY,
    "--tls": libvirt.VIR_MIGRATE_TLS,
    "--parallel": libvirt.VIR_MIGRATE_PARALLEL,
}
# Options that only change how virsh itself behaves (output, its own waiting): no effect here.
IGNORED = {"--verbose", "--direct", "--timeout", "--timeout-suspend", "--timeout-postcopy",
           "--postcopy-after-precopy"}
WITH_VALUE = {"--migrateuri", "--parallel-connections", "--listen-address",
              "--disks-port", "--timeout", "--dname", "--bandwidth", "--comp-methods"}
PARAMS = {
    "--parallel-connections": (libvirt.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS, int),
    "--listen-address": (libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS, str),
    "--disks-port": (libvirt.VIR_MIGRATE_PARAM_DISKS_PORT, int),
    "--dname": (libvirt.VIR_MIGRATE_PARAM_DEST_NAME, str),
    "--bandwidth": (libvirt.VIR_MIGRATE_PARAM_BANDWIDTH, int),
    "--comp-methods": (libvirt.VIR_MIGRATE_PARAM_COMPRESSION, str),
}


@dataclass(frozen=True)
class MigrateOptions:
    flags: int = 0
    params: dict[str, object] = field(default_factory=dict)
    migrateuri: str | None = None


def _bad(msg: str) -> OcfError:
    return OcfError(OcfExit.ERR_CONFIGURED, f"migrate_options: {msg}")


def parse_migrate_options(text: str | None) -> MigrateOptions:
    """Flags and parameters for ``text``; ERR_CONFIGURED for an option we cannot honour."""
    try:
        words = shlex.split(text or "")
    except ValueError as exc:
        raise _bad(str(exc)) from None
    flags, params, uri = 0, {}, None
    i = 0
    while i < len(words):
        word, _, inline = words[i].partition("=")
        value: str | None = inline or None
        if word in WITH_VALUE and value is None:
            i += 1
            if i >= len(words):
                raise _bad(f"{word} needs a value")
            value = words[i]
        i += 1
        if word in FLAGS:
            flags |= FLAGS[word]
        elif word == "--migrateuri":
            uri = value
        elif word in PARAMS:
            key, kind = PARAMS[word]
            try:
                params[key] = kind(value)
            except ValueError:
                raise _bad(f"{word} needs a number, not {value!r}") from None
        elif word not in IGNORED:
            raise _bad(f"unsupported option {words[i - 1]!r}")
    return MigrateOptions(flags, params, uri)
