"""The libvirt half of a ``migrate`` request: QEMU's stream goes to the local proxy port.

The source QEMU is told to migrate to ``tcp://127.0.0.1:<port>`` (in its own node that is the
daemon's proxy); the destination QEMU listens on 127.0.0.1 with the same port (libvirt takes
the port from the URI), where the destination daemon delivers the stream. Kept apart from the
server so that it can be exercised on its own against real libvirt (the lab).
"""

from __future__ import annotations

import contextlib
from typing import Any

import libvirt

from perfplus_agent.bounded import call_with_timeout
from perfplus_agent.daemon.protocol import Migrate
from perfplus_agent.errors import PerfplusError
from perfplus_agent.libvirt_conn import open_connection
from perfplus_agent.migration.convergence import StopAndCopyAfter
from perfplus_agent.migration.live import DEFAULT_FLAGS, MigrationRequest, live_migrate

__all__ = ["LOOPBACK", "build_request", "migrate_domain"]

LOOPBACK = "127.0.0.1"
CONNECT_TIMEOUT_S = 10.0


def build_request(msg: Migrate, port: int, listen_address: str = LOOPBACK,
                  persistent: bool = False) -> MigrationRequest:
    """The MigrationRequest that routes ``msg``'s migration through proxy port ``port``; a
    ``persistent`` domain stays defined on the destination only, as the agent does."""
    flags = DEFAULT_FLAGS
    if persistent:
        flags |= libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
    extra: dict[str, object] = {libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS: listen_address}
    if msg.channels:
        flags |= libvirt.VIR_MIGRATE_PARALLEL
        extra[libvirt.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS] = msg.channels
    if msg.xbzrle_cache_mib:
        flags |= libvirt.VIR_MIGRATE_COMPRESSED
        extra[libvirt.VIR_MIGRATE_PARAM_COMPRESSION] = "xbzrle"
        extra[libvirt.VIR_MIGRATE_PARAM_COMPRESSION_XBZRLE_CACHE] = msg.xbzrle_cache_mib << 20
    return MigrationRequest(
        dest_uri=msg.dest_uri,
        migrate_uri=f"tcp://{listen_address}:{port}",
        bandwidth_mib=msg.bandwidth_mib,
        timeout_s=msg.timeout_s,
        flags=flags,
        extra_params=extra,
    )


def migrate_domain(libvirt_uri: str, msg: Migrate, port: int,
                   listen_address: str = LOOPBACK) -> dict[str, Any]:
    """Migrate ``msg.domain`` from the libvirt at ``libvirt_uri`` through proxy ``port``; the
    figures as JSON-ready values. PerfplusError (guest still on the source) on failure."""
    conn = call_with_timeout(lambda: open_connection(libvirt_uri), CONNECT_TIMEOUT_S,
                             f"libvirt at {libvirt_uri}")
    dest_conn = None
    try:
        try:
            dom = conn.lookupByName(msg.domain)
        except libvirt.libvirtError as exc:
            raise PerfplusError(f"no domain {msg.domain!r} here: "
                                f"{exc.get_error_message()}") from None
        try:  # only for the destination's final figures (downtime); optional
            dest_conn = call_with_timeout(lambda: open_connection(msg.dest_uri),
                                          CONNECT_TIMEOUT_S, f"libvirt at {msg.dest_uri}")
        except PerfplusError:
            dest_conn = None
        req = build_request(msg, port, listen_address, persistent=bool(dom.isPersistent()))
        controller = StopAndCopyAfter(msg.stop_copy_after) if msg.stop_copy_after else None
        result = live_migrate(dom, req, dest_conn, controller=controller)
    finally:
        for c in (conn, dest_conn):
            if c is not None:
                with contextlib.suppress(libvirt.libvirtError):
                    c.close()
    return {
        "wall_s": round(result.wall_s, 3),
        "samples": result.samples,
        "stats": result.stats.as_dict(),
        "decisions": [d.reason for d in result.decisions],
    }
