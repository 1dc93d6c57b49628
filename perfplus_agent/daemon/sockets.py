"""Socket settings shared by the daemon: dead-peer detection and bounded kernel buffers."""

from __future__ import annotations

import re
import socket
import time

from perfplus_agent.errors import UsageError

__all__ = [
    "DEFAULT_SOCKBUF",
    "TICK_S",
    "format_address",
    "parse_address",
    "recv_some",
    "recv_some_into",
    "send_all",
    "tune",
]

# Kernel buffer per direction and socket: small enough that QEMU's bandwidth estimate reflects
# what the link really carries (a socket with autotuned megabytes would swallow bursts).
DEFAULT_SOCKBUF = 512 * 1024
KEEPALIVE_IDLE_S = 5
KEEPALIVE_INTERVAL_S = 2
KEEPALIVE_PROBES = 3
# Sockets shared by a sending and a receiving thread keep this one fixed timeout (settimeout
# is per socket, not per thread); longer waits are loops of ticks up to a deadline.
TICK_S = 0.2
_ADDRESS = re.compile(r"\[([^\]]+)\](?::(\d+))?|([^:\[\]]+)(?::(\d+))?")


def tune(sock: socket.socket, bufsize: int | None = None) -> None:
    """TCP keepalive that notices a dead peer within ~11 s, no Nagle delay for small frames,
    and fixed send/receive buffers when ``bufsize`` is given (disables autotuning)."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_PROBES)
    if bufsize:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, bufsize)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, bufsize)


def parse_address(text: str, default_port: int | None = None) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or (with a default port) a bare host."""
    m = _ADDRESS.fullmatch(text.strip())
    host = (m.group(1) or m.group(3)) if m else None
    port = (m.group(2) or m.group(4)) if m else None
    if port is None and default_port is not None:
        port = str(default_port)
    if not host or port is None or not 0 < int(port) < 65536:
        raise UsageError(f"bad address {text!r}: expected HOST:PORT")
    return host, int(port)


def format_address(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def send_all(sock: socket.socket, data: bytes | memoryview, deadline: float) -> None:
    """Send everything before ``deadline`` (monotonic) on a socket whose timeout is a tick;
    TimeoutError when the peer does not take it in time, OSError when the socket fails."""
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view)
        except TimeoutError:
            if time.monotonic() >= deadline:
                raise
            continue
        view = view[sent:]


def recv_some(sock: socket.socket, size: int) -> bytes | None:
    """Up to ``size`` bytes, b"" at EOF, or None when nothing came within one tick."""
    try:
        return sock.recv(size)
    except TimeoutError:
        return None


def recv_some_into(sock: socket.socket, view: memoryview) -> int | None:
    """Receive into ``view``: the byte count, 0 at EOF, or None when nothing came within
    one tick."""
    try:
        return sock.recv_into(view)
    except TimeoutError:
        return None
