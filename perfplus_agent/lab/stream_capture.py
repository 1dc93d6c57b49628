"""Record a real QEMU migration stream on loopback, every channel of it.

A lab guest is migrated to a sink that accepts the main channel and the multifd channels
(QEMU connects them in that order) and keeps their bytes; with no return path the source
needs nothing back. Tests replay the recordings through the Perf+ rewriter and an
independent loader model; nothing recorded is committed.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from pathlib import Path

from perfplus_agent.lab.direct_guest import DirectGuest

__all__ = ["CapturedMigration", "capture_migration"]

SINK_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class CapturedMigration:
    channels: list[bytes]  # [main, multifd 0, multifd 1, ...]
    info: dict[str, object]  # the source's final query-migrate


def _sink(listener: socket.socket, count: int, out: list[bytearray],
          errors: list[str]) -> None:
    readers = []
    try:
        for i in range(count):
            conn, _ = listener.accept()
            conn.settimeout(SINK_TIMEOUT_S)
            t = threading.Thread(target=_drain, args=(conn, out[i], errors), daemon=True)
            t.start()
            readers.append(t)
    except OSError as exc:
        errors.append(f"sink accept: {exc}")
    for t in readers:
        t.join(SINK_TIMEOUT_S)


def _drain(conn: socket.socket, buf: bytearray, errors: list[str]) -> None:
    with conn:
        try:
            while chunk := conn.recv(1 << 20):
                buf += chunk
        except OSError as exc:
            errors.append(f"sink read: {exc}")


def capture_migration(workdir: Path, workload: str, *, memory_mib: int = 256,
                      channels: int = 0, max_bandwidth: int = 64 << 20,
                      settle_s: float = 1.0) -> CapturedMigration:
    """Boot a guest running ``workload`` (dirtier arguments), let it write for
    ``settle_s``, migrate it into a recording sink, and return every channel's bytes."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(channels + 1)
    listener.settimeout(SINK_TIMEOUT_S)
    port = listener.getsockname()[1]
    out = [bytearray() for _ in range(channels + 1)]
    errors: list[str] = []
    sink = threading.Thread(target=_sink, args=(listener, channels + 1, out, errors),
                            daemon=True)
    with DirectGuest(workdir, "capture", memory_mib, workload) as guest:
        guest.wait_ready()
        threading.Event().wait(settle_s)
        caps = {"multifd": True} if channels else {}
        params: dict[str, object] = {"max-bandwidth": max_bandwidth}
        if channels:
            params["multifd-channels"] = channels
        guest.configure_migration(caps, params)
        sink.start()
        try:
            info = guest.migrate(f"tcp:127.0.0.1:{port}")
        finally:
            listener.close()
    sink.join(SINK_TIMEOUT_S)
    if errors:
        raise OSError("; ".join(errors))
    return CapturedMigration(channels=[bytes(b) for b in out], info=info)
