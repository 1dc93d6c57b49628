"""Asking a daemon something: one authenticated connection, one request, one answer."""

from __future__ import annotations

from typing import Any

from perfplus_agent.daemon.defaults import DEFAULT_PORT
from perfplus_agent.daemon.handshake import HandshakeError
from perfplus_agent.daemon.protocol import ProtocolError, decode_response, encode
from perfplus_agent.daemon.secure_channel import ChannelError, connect_secure
from perfplus_agent.daemon.sockets import format_address, parse_address
from perfplus_agent.errors import PerfplusError

__all__ = ["DEFAULT_PORT", "DaemonError", "request"]


class DaemonError(PerfplusError):
    """The daemon could not be reached, refused us, or answered nonsense."""


def request(address: str | tuple[str, int], key: bytes, message: dict[str, Any],
            timeout: float = 30.0) -> dict[str, Any]:
    """Send ``message`` to the daemon at ``address`` (``host[:port]``) and return its response
    (``{"ok": ...}``); DaemonError if there is none within ``timeout`` seconds. A migrate
    request needs a timeout above its ``timeout_s``."""
    addr = parse_address(address, DEFAULT_PORT) if isinstance(address, str) else address
    where = format_address(addr)
    try:
        channel = connect_secure(addr, key, timeout)
    except (ChannelError, HandshakeError) as exc:
        raise DaemonError(f"daemon at {where}: {exc}") from None
    try:
        channel.send(encode(message))
        frame = channel.recv(timeout=timeout)
        if not frame:
            raise DaemonError(f"daemon at {where} closed the connection without answering")
        return decode_response(frame)
    except (ChannelError, ProtocolError) as exc:
        raise DaemonError(f"daemon at {where}: {exc}") from None
    finally:
        channel.close(graceful=True)
