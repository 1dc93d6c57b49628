"""A slow, independent model of QEMU 7.2's loader, for tests: it applies a migration stream
(main channel, and multifd channels) to a memory image the way the destination would, so a
test can check that a rewritten stream leaves the destination with exactly the memory the
original stream gives. Written from the format notes, deliberately without sharing code
with the product's parser."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

PAGE = 4096
EOS, ZERO, MEM_SIZE, PAGEF, CONT, XBZRLE, COMPRESS = 0x10, 0x02, 0x04, 0x08, 0x20, 0x40, 0x100


class ModelError(Exception):
    pass


@dataclass
class Image:
    """RAM blocks by name: page offset -> 4096 bytes (absent = zero)."""

    lengths: dict[bytes, int] = field(default_factory=dict)
    pages: dict[tuple[bytes, int], bytes | frozenset[bytes]] = field(default_factory=dict)
    page_records: int = 0
    zero_records: int = 0
    ram_sections: int = 0

    def write(self, block: bytes, offset: int, data: bytes) -> None:
        if block not in self.lengths or offset % PAGE or offset >= self.lengths[block]:
            raise ModelError(f"page {block!r}+{offset:#x} outside RAM")
        if data == bytes(PAGE):
            self.pages.pop((block, offset), None)
        else:
            self.pages[(block, offset)] = data

    def snapshot(self) -> dict[tuple[bytes, int], bytes]:
        return dict(self.pages)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = bytes(data), 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ModelError("truncated stream")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def be16(self) -> int:
        return struct.unpack(">H", self.take(2))[0]

    def be32(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def be64(self) -> int:
        return struct.unpack(">Q", self.take(8))[0]


Op = tuple[bytes, int, bytes]  # block, offset, page content


def main_intervals(data: bytes) -> tuple[dict[bytes, int], list[list[Op]]]:
    """RAM block lengths and the main channel's page writes, one list per RAM section
    (stops at the first FULL section)."""
    r = _Reader(data)
    if r.take(4) != b"QEVM" or r.be32() != 3:
        raise ModelError("bad header")
    if r.data[r.pos] == 0x07:
        r.u8()
        r.take(r.be32())
        while r.data[r.pos] == 0x05:
            r.u8()
            name = r.take(r.u8())
            r.be32()
            if name != b"configuration/uuid":
                raise ModelError(f"model does not know {name!r}")
            r.take(16)
    lengths: dict[bytes, int] = {}
    intervals: list[list[Op]] = []
    ram_id = None
    last_block: list[bytes | None] = [None]
    while True:
        kind = r.u8()
        if kind in (0x00, 0x04):
            return lengths, intervals
        if kind == 0x08:
            r.be16()
            r.take(r.be16())
            continue
        section = r.be32()
        if kind == 0x01:
            idstr = r.take(r.u8())
            r.be32()
            r.be32()
            if idstr != b"ram":
                raise ModelError(f"model does not know section {idstr!r}")
            ram_id = section
        elif section != ram_id:
            raise ModelError("unknown section id")
        intervals.append(_ram_records(r, lengths, last_block))
        if r.u8() != 0x7E or r.be32() != ram_id:
            raise ModelError("bad footer")


def _ram_records(r: _Reader, lengths: dict[bytes, int], last: list[bytes | None]) -> list[Op]:
    ops: list[Op] = []
    while True:
        hdr = r.be64()
        flags, addr = hdr & (PAGE - 1), hdr & ~(PAGE - 1)
        if flags & MEM_SIZE:
            total, seen = addr, 0
            while seen < total:
                name = r.take(r.u8())
                lengths[name] = r.be64()
                seen += lengths[name]
            continue
        if flags & EOS:
            return ops
        if flags & CONT:
            if last[0] is None:
                raise ModelError("CONTINUE without a block")
        else:
            last[0] = r.take(r.u8())
        block = last[0]
        if flags & ZERO:
            if r.u8() != 0:
                raise ModelError("non-zero fill")
            ops.append((block, addr, bytes(PAGE)))
        elif flags & PAGEF:
            ops.append((block, addr, r.take(PAGE)))
        else:
            raise ModelError(f"model does not handle flags {flags:#x}")


def multifd_intervals(data: bytes) -> list[list[Op]]:
    """One multifd channel's page writes, one list per SYNC-delimited interval."""
    r = _Reader(data)
    if r.take(4) != b"\x11\x22\x33\x44":
        raise ModelError("bad multifd magic")
    r.take(60)
    intervals: list[list[Op]] = [[]]
    while r.pos < len(r.data):
        magic, version, flags, alloc, normal, nxt = struct.unpack(">IIIIII", r.take(24))
        if magic != 0x11223344 or version != 1 or normal > alloc:
            raise ModelError("bad packet")
        r.take(8 + 32)
        block = r.take(256).split(b"\0", 1)[0]
        offsets = struct.unpack(f">{alloc}Q", r.take(8 * alloc))[:normal]
        del nxt  # QEMU 7.2 leaves it stale on empty packets; its nocomp loader ignores it
        intervals[-1].extend((block, off, r.take(PAGE)) for off in offsets)
        if flags & 1:
            intervals.append([])
    return intervals


def load(main: bytes, channels: list[bytes] = ()) -> Image:
    """The destination's RAM after loading these streams, applied interval by interval as
    QEMU's barrier orders them. Within an interval the destination applies each channel in
    order but interleaves channels freely, so a page that several channels carry in one
    interval ends with one of their last copies: the model keeps the set of candidates
    (a frozenset) unless they agree; a later interval's write settles it."""
    lengths, main_ops = main_intervals(main)
    multifd_ops = [multifd_intervals(c) for c in channels]
    image = Image(lengths=lengths, ram_sections=len(main_ops))
    for k, ops in enumerate(main_ops):
        per_channel = [ops] + [chan[k] if k < len(chan) else [] for chan in multifd_ops]
        last: dict[tuple[bytes, int], dict[int, bytes]] = {}
        for c, chan_ops in enumerate(per_channel):
            for block, off, content in chan_ops:
                last.setdefault((block, off), {})[c] = content
                image.page_records += content != bytes(PAGE)
                image.zero_records += content == bytes(PAGE)
        for (block, off), copies in last.items():
            candidates = set(copies.values())
            image.write(block, off, candidates.pop() if len(candidates) == 1 else bytes(PAGE))
            if len(candidates) >= 1:  # several different last copies: undecided
                image.pages[(block, off)] = frozenset(copies.values())
    return image
