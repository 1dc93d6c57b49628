"""Two Perf+ migration daemons on loopback, carrying migrations between direct QEMU guests.

The source daemon's proxy listens on 127.0.0.1; the destination daemon hands the stream to
a QEMU listening on 127.0.0.2 (another loopback address), so both ends can use the same
port number in one network namespace, as they do on two real nodes. The libvirt step of
the daemon is replaced by QMP: the destination QEMU listens, the source QEMU migrates to
the proxy. Used by the byte-for-byte tests.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from perfplus_agent.daemon.client import request
from perfplus_agent.daemon.protocol import Migrate
from perfplus_agent.daemon.server import DaemonServer, ServerConfig
from perfplus_agent.daemon.transform import TransformFactory
from perfplus_agent.errors import PerfplusError
from perfplus_agent.lab.direct_guest import DirectGuest
from perfplus_agent.perfplus_c import DEFAULT_ALGORITHM

__all__ = ["DaemonPair", "migration_settings"]

SOURCE_HOST = "127.0.0.1"
DEST_QEMU_HOST = "127.0.0.2"


def migration_settings(channels: int, max_bandwidth: int | None = None,
                       downtime_limit_ms: int | None = None) -> tuple[dict[str, bool],
                                                                      dict[str, Any]]:
    """QMP capabilities and parameters for a migration (the same on both ends)."""
    caps = {"multifd": True} if channels else {}
    params: dict[str, Any] = {"max-bandwidth": max_bandwidth or (10 << 30)}
    if channels:
        params["multifd-channels"] = channels
    if downtime_limit_ms is not None:
        params["downtime-limit"] = downtime_limit_ms
    return caps, params


@dataclass
class DaemonPair:
    """A source and a destination daemon with a fresh shared key, on loopback."""

    port_range: tuple[int, int] = (47700, 47799)
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    # replaces the source daemon's Perf+ filter (tests that wrap it to inject a failure)
    make_transform: TransformFactory | None = None
    _guests: dict[str, tuple[DirectGuest, DirectGuest]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.source = DaemonServer(self.key, ServerConfig(
            listen=(SOURCE_HOST, 0), port_range=self.port_range, proxy_host=SOURCE_HOST,
            qemu_host=SOURCE_HOST), migrate_fn=self._qmp_migrate,
            make_transform=self.make_transform)
        self.dest = DaemonServer(self.key, ServerConfig(
            listen=(DEST_QEMU_HOST, 0), port_range=self.port_range, proxy_host=DEST_QEMU_HOST,
            qemu_host=DEST_QEMU_HOST))

    def __enter__(self) -> DaemonPair:
        self.source.start()
        self.dest.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.source.stop()
        self.dest.stop()

    def migrate(self, src: DirectGuest, dst: DirectGuest, *, channels: int = 0,
                filter: str = "perfplus", algorithm: str = DEFAULT_ALGORITHM,
                timeout_s: float = 300.0) -> dict[str, Any]:
        """Ask the source daemon to migrate ``src`` into ``dst`` (both already configured
        for ``channels``) with the Perf+ ``filter`` mode (perfplus, measure or off); the
        daemon's answer (``ok``, QEMU's figures, relay and Perf+ statistics)."""
        name = f"{src.name}->{dst.name}"
        with self._lock:
            self._guests[name] = (src, dst)
        host, port = self.dest.address
        try:
            return request(self.source.address, self.key, {
                "op": "migrate", "domain": name, "dest_node": "dest",
                "dest_address": f"{host}:{port}", "dest_uri": "qmp", "channels": channels,
                "timeout_s": timeout_s, "filter": filter, "algorithm": algorithm,
            }, timeout=timeout_s + 30)
        finally:
            with self._lock:
                self._guests.pop(name, None)

    def _qmp_migrate(self, msg: Migrate, port: int) -> dict[str, Any]:
        with self._lock:
            src, dst = self._guests[msg.domain]
        dst.listen(f"tcp:{DEST_QEMU_HOST}:{port}")
        try:
            info = src.migrate(f"tcp:{SOURCE_HOST}:{port}", timeout=msg.timeout_s)
        except PerfplusError:
            raise
        return {"qemu": info}
