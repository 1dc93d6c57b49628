"""The hook through which the Perf+ stream filter sees the source → destination stream.

For every data channel the relay calls ``make_transform(first_bytes, channel_index)`` once
the channel's first bytes (at least 4 unless the channel ended sooner) have arrived, then
``feed(chunk)`` for every chunk read from QEMU, sending what it returns (bytes, or an
iterable of byte pieces, each sent as soon as it is produced), and ``finish()``
at QEMU's end of stream. ``feed`` may block briefly (a cross-channel barrier); any exception
from the factory, ``feed`` or ``finish`` aborts the whole migration (every channel closed, the
guest stays on the source). An optional ``abort()`` is called when the migration is torn
down, to release a ``feed`` blocked on a barrier.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

__all__ = [
    "FIRST_BYTES",
    "MAGIC_MAIN",
    "MAGIC_MULTIFD",
    "IdentityTransform",
    "Transform",
    "TransformFactory",
    "channel_kind",
    "identity_factory",
]

FIRST_BYTES = 4
MAGIC_MAIN = b"QEVM"
MAGIC_MULTIFD = bytes.fromhex("11223344")


class Transform(Protocol):
    def feed(self, chunk: bytes) -> bytes | Iterable[bytes]: ...

    def finish(self) -> bytes: ...


TransformFactory = Callable[[bytes, int], Transform]


class IdentityTransform:
    """Pass everything through unchanged."""

    def feed(self, chunk: bytes) -> bytes:
        return chunk

    def finish(self) -> bytes:
        return b""


def identity_factory(first_bytes: bytes, channel_index: int) -> Transform:
    """The default factory: no filtering."""
    del first_bytes, channel_index
    return IdentityTransform()


def channel_kind(first_bytes: bytes) -> str:
    """``main``, ``multifd`` or ``unknown`` from a channel's first four bytes."""
    if first_bytes[:4] == MAGIC_MAIN:
        return "main"
    if first_bytes[:4] == MAGIC_MULTIFD:
        return "multifd"
    return "unknown"
