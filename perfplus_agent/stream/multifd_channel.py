"""One multifd channel of a QEMU 7.2 migration, rewritten packet by packet.

A channel starts with a 64-byte ``MultiFDInit_t`` and then carries packets: a fixed header
with ``pages_alloc`` offset slots, followed by ``normal_pages`` raw pages. The C filter
shrinks each packet to the pages whose content changed since last forwarded (rewriting
``normal_pages``, ``next_packet_size`` and the offsets); every packet is still forwarded,
SYNC packets included, and the session's barrier orders this channel against the main one.
Compressed channels (zlib/zstd keep one compression stream per channel) cannot be filtered:
the migration is passed through verbatim.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from perfplus_agent.perfplus_c import PAGE_SIZE, UnsupportedStream
from perfplus_agent.stream.format import (
    MULTIFD_COMPRESSION_MASK,
    MULTIFD_FLAG_SYNC,
    MULTIFD_INIT_SIZE,
    MULTIFD_MAGIC,
    MULTIFD_PACKET_FIXED,
    MULTIFD_VERSION,
)
from perfplus_agent.stream.session import StreamSession

__all__ = ["MultifdChannel"]

_HEAD = struct.Struct(">IIIIII")  # magic, version, flags, pages_alloc, normal_pages, next_size
MAX_CHANNELS = 13  # the C filter's per-page stamp has room for 13 multifd channels
MAX_PAGES_ALLOC = 1024  # QEMU 7.2 uses 128 for 4 KiB pages; more is not a stream we know


class MultifdChannel:
    """Rewrites one multifd channel; ``feed`` yields the bytes to forward, in order."""

    def __init__(self, session: StreamSession, index: int) -> None:
        self.session = session
        self.index = index
        self._buf = bytearray()
        self._pos = 0
        self._state = "init"
        self._syncs = 0
        self._pending_barrier = 0

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Consume ``data``; yield whole rewritten packets (a SYNC packet is yielded before
        the barrier wait that follows it)."""
        if self._state == "verbatim":
            if data:
                yield data
            return
        self._buf += data
        while self._state != "verbatim":
            if self._pending_barrier:
                self.session.multifd_wait(self._pending_barrier)
                self._pending_barrier = 0
            out = self._step()
            if out is None:
                break
            if out:
                yield out
        if self._state == "verbatim":
            rest = bytes(self._buf[self._pos:])
            self._buf.clear()
            self._pos = 0
            if rest:
                yield rest
        elif self._pos:
            del self._buf[:self._pos]
            self._pos = 0

    def finish(self) -> bytes:
        rest = bytes(self._buf[self._pos:])
        self._buf.clear()
        self._pos = 0
        return rest

    def _available(self) -> int:
        return len(self._buf) - self._pos

    def _verbatim(self, reason: str) -> bytes:
        self.session.stand_aside(f"multifd channel {self.index}: {reason}")
        self._state = "verbatim"
        return b""

    def _step(self) -> bytes | None:
        if self._state == "init":
            if self._available() < MULTIFD_INIT_SIZE:
                return None
            init = bytes(self._buf[self._pos:self._pos + MULTIFD_INIT_SIZE])
            if init[:4] != MULTIFD_MAGIC or struct.unpack_from(">I", init, 4)[0] != MULTIFD_VERSION:
                return self._verbatim("unknown channel header")
            if self.index >= min(self.session.channels, MAX_CHANNELS):
                return self._verbatim(f"more multifd channels than the {self.session.channels} "
                                      f"announced (Perf+ filters at most {MAX_CHANNELS})")
            self._pos += MULTIFD_INIT_SIZE
            self._state = "packets"
            return init
        if self._available() < MULTIFD_PACKET_FIXED:
            return None
        magic, version, flags, alloc, normal, _ = _HEAD.unpack_from(self._buf, self._pos)
        if (magic.to_bytes(4, "big") != MULTIFD_MAGIC or version != MULTIFD_VERSION
                or alloc > MAX_PAGES_ALLOC or normal > alloc):
            return self._verbatim("a packet header Perf+ does not know")
        if flags & MULTIFD_COMPRESSION_MASK:
            return self._verbatim("compressed multifd packets")
        packet_len = MULTIFD_PACKET_FIXED + 8 * alloc
        total = packet_len + normal * PAGE_SIZE
        if self._available() < total:
            return None
        start = self._pos
        self._pos += total
        if not self.session.filtering:
            return self._verbatim("the migration is passed through") + bytes(
                self._buf[start:start + total])
        view = memoryview(self._buf)
        try:
            packet, payload, kept, dropped, unchanged = self.session.filter.filter_multifd(
                view[start:start + packet_len], view[start + packet_len:start + total],
                channel=self.index, interval=self._syncs)
        except UnsupportedStream as exc:
            self._pos = start
            return self._verbatim(str(exc))
        finally:
            view.release()
        self.session.stats.add(self._syncs, pages_seen=normal, pages_forwarded=kept,
                               pages_dropped=dropped, pages_unchanged=unchanged, bytes_in=total,
                               bytes_out=len(packet) + len(payload))
        if flags & MULTIFD_FLAG_SYNC:
            self._syncs = self.session.multifd_passed_sync(self.index)
            self._pending_barrier = self._syncs
        return packet + payload
