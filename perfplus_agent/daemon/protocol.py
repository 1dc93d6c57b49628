"""Control messages: one JSON object per secure-channel frame, strictly validated.

Requests carry ``op``; responses are ``{"ok": true, ...}`` or ``{"ok": false, "error": ...}``.

* ``ping``: liveness and version.
* ``migrate``: the receiving (source) daemon migrates one of its domains to ``dest_node``,
  whose daemon listens at ``dest_address`` and whose libvirt is ``dest_uri``.
* ``prepare-incoming``: the receiving (destination) daemon expects ``channels + 1`` data
  connections and connects each, in order, to its local QEMU at ``port``; answers a session.
* ``data``: turns this connection into data channel ``channel`` of ``session``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from perfplus_agent.errors import PerfplusError
from perfplus_agent.perfplus_c import ALGORITHMS, DEFAULT_ALGORITHM
from perfplus_agent.stream.multifd_channel import MAX_CHANNELS as FILTERED_CHANNELS

__all__ = [
    "FILTER_MODES",
    "MAX_CHANNELS",
    "MAX_MESSAGE",
    "DataOpen",
    "Migrate",
    "Ping",
    "PrepareIncoming",
    "ProtocolError",
    "Request",
    "decode_response",
    "encode",
    "error",
    "ok",
    "parse_request",
]

MAX_MESSAGE = 64 * 1024
MAX_CHANNELS = 16  # multifd channels per migration
MAX_FILTERED_CHANNELS = FILTERED_CHANNELS  # what the filter's per-page channel stamps allow
MAX_TIMEOUT_S = 24 * 3600.0
MAX_TEXT = 1024
# What the source daemon does to a migration's stream: filter it (drop unchanged pages),
# measure it (parse, tag and count, drop nothing) or carry it untouched (no parsing).
FILTER_MODES = ("perfplus", "measure", "off")


class ProtocolError(PerfplusError):
    """A message that is not valid JSON, not an object, or has missing/bad/unknown fields."""


@dataclass(frozen=True)
class Ping:
    pass


@dataclass(frozen=True)
class Migrate:
    domain: str
    dest_node: str
    dest_address: str
    dest_uri: str
    channels: int = 0
    timeout_s: float = 300.0
    bandwidth_mib: int = 0
    filter: str = "perfplus"  # one of FILTER_MODES
    algorithm: str = DEFAULT_ALGORITHM  # the Perf+ filter's page hash
    xbzrle_cache_mib: int = 0  # > 0: QEMU's XBZRLE with this cache (for comparisons)
    stop_copy_after: int = 0  # > 0: stop-and-copy after this many passes (the paper's end)


@dataclass(frozen=True)
class PrepareIncoming:
    port: int
    channels: int = 0


@dataclass(frozen=True)
class DataOpen:
    session: str
    channel: int


Request = Ping | Migrate | PrepareIncoming | DataOpen


def encode(message: dict[str, Any]) -> bytes:
    """A message as a frame's bytes."""
    data = json.dumps(message, separators=(",", ":"), allow_nan=False).encode()
    if len(data) > MAX_MESSAGE:
        raise ProtocolError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE}")
    return data


def ok(**fields: Any) -> dict[str, Any]:
    return {"ok": True, **fields}


def error(message: str, **fields: Any) -> dict[str, Any]:
    return {"ok": False, "error": message, **fields}


def _decode(frame: bytes) -> dict[str, Any]:
    if len(frame) > MAX_MESSAGE:
        raise ProtocolError("message too large")
    try:
        obj = json.loads(frame.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError):
        raise ProtocolError("message is not valid JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError("message is not a JSON object")
    return obj


def _no_constant(name: str) -> None:
    raise ValueError(name)


def decode_response(frame: bytes) -> dict[str, Any]:
    """A response object; ProtocolError if it lacks a boolean ``ok`` (or an error text)."""
    obj = _decode(frame)
    if not isinstance(obj.get("ok"), bool):
        raise ProtocolError("response without a boolean 'ok'")
    if not obj["ok"] and not isinstance(obj.get("error"), str):
        raise ProtocolError("error response without an 'error' text")
    return obj


def _text(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        raise ProtocolError(f"'{name}' must be a non-empty string")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ProtocolError(f"'{name}' contains control characters")
    return value


def _int(obj: dict[str, Any], name: str, default: int | None, lo: int, hi: int) -> int:
    value = obj.get(name, default)
    if value is None or isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"'{name}' must be an integer")
    if not lo <= value <= hi:
        raise ProtocolError(f"'{name}' must be in {lo}..{hi}")
    return value


def _number(obj: dict[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    value = obj.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ProtocolError(f"'{name}' must be a number")
    if not lo < value <= hi:
        raise ProtocolError(f"'{name}' must be in ({lo:g}, {hi:g}]")
    return float(value)


def _choice(obj: dict[str, Any], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = obj.get(name, default)
    if value not in allowed:
        raise ProtocolError(f"'{name}' must be one of {', '.join(allowed)}")
    return value


def _filter_mode(obj: dict[str, Any]) -> str:
    """``filter``: a mode of FILTER_MODES, or the older booleans (true = perfplus, false =
    off)."""
    value = obj.get("filter", "perfplus")
    if isinstance(value, bool):
        return "perfplus" if value else "off"
    if value not in FILTER_MODES:
        raise ProtocolError(f"'filter' must be one of {', '.join(FILTER_MODES)} "
                            "(or true/false)")
    return value


_FIELDS = {
    "ping": {"op"},
    "migrate": {"op", "domain", "dest_node", "dest_address", "dest_uri", "channels",
                "timeout_s", "bandwidth_mib", "filter", "algorithm", "xbzrle_cache_mib",
                "stop_copy_after"},
    "prepare-incoming": {"op", "port", "channels"},
    "data": {"op", "session", "channel"},
}


def parse_request(frame: bytes) -> Request:
    """The request in ``frame``; ProtocolError naming the first problem."""
    obj = _decode(frame)
    op = obj.get("op")
    if not isinstance(op, str) or op not in _FIELDS:
        raise ProtocolError(f"unknown op {op!r}" if isinstance(op, str) else "missing 'op'")
    unknown = sorted(set(obj) - _FIELDS[op])
    if unknown:
        raise ProtocolError(f"unknown field(s) for {op}: {', '.join(unknown)}")
    if op == "ping":
        return Ping()
    if op == "migrate":
        msg = Migrate(
            domain=_text(obj, "domain"),
            dest_node=_text(obj, "dest_node"),
            dest_address=_text(obj, "dest_address"),
            dest_uri=_text(obj, "dest_uri"),
            channels=_int(obj, "channels", 0, 0, MAX_CHANNELS),
            timeout_s=_number(obj, "timeout_s", 300.0, 0.0, MAX_TIMEOUT_S),
            bandwidth_mib=_int(obj, "bandwidth_mib", 0, 0, 1 << 40),
            filter=_filter_mode(obj),
            algorithm=_choice(obj, "algorithm", DEFAULT_ALGORITHM, ALGORITHMS),
            xbzrle_cache_mib=_int(obj, "xbzrle_cache_mib", 0, 0, 1 << 20),
            stop_copy_after=_int(obj, "stop_copy_after", 0, 0, 1000),
        )
        if msg.filter != "off" and msg.channels > MAX_FILTERED_CHANNELS:
            raise ProtocolError(f"the Perf+ filter handles at most {MAX_FILTERED_CHANNELS} "
                                f"multifd channels, not {msg.channels}; ask for fewer, or "
                                "for filter 'off'")
        return msg
    if op == "prepare-incoming":
        return PrepareIncoming(port=_int(obj, "port", None, 1, 65535),
                               channels=_int(obj, "channels", 0, 0, MAX_CHANNELS))
    session = _text(obj, "session")
    return DataOpen(session=session, channel=_int(obj, "channel", None, 0, MAX_CHANNELS))
