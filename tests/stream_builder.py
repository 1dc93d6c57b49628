"""Crafted QEMU 7.2 migration streams for tests: a guest whose memory changes between
iterations, sent the way QEMU sends it (main channel only, or with multifd channels)."""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field

PAGE = 4096
EOS, ZERO, MEM_SIZE, PAGEF, CONT = 0x10, 0x02, 0x04, 0x08, 0x20
PACKET_PAGES = 128


def config(machine: bytes = b"pc-i440fx-7.2") -> bytes:
    return b"QEVM" + struct.pack(">I", 3) + b"\x07" + struct.pack(">I", len(machine)) + machine


def footer(section: int) -> bytes:
    return b"\x7e" + struct.pack(">I", section)


@dataclass
class GuestStream:
    """Builds the streams of one migration of a guest with ``blocks`` (name -> pages)."""

    blocks: dict[bytes, int]
    channels: int = 0
    seed: int = 0
    memory: dict[tuple[bytes, int], bytes] = field(default_factory=dict)
    main: bytearray = field(default_factory=bytearray)
    multifd: list[bytearray] = field(default_factory=list)
    duplicate_boundaries: bool = False  # like QEMU 7.2: a full batch's last page is sent
    # again as the next batch's first, on the next channel, and the guest may write between
    redirty: set[tuple[bytes, int]] = field(default_factory=set)
    _last_block: bytes | None = None
    _packet_num: int = 0
    _next_channel: int = 0

    def __post_init__(self) -> None:
        self.rnd = random.Random(self.seed)
        self.main += config()
        self.multifd = [bytearray(self._init(i)) for i in range(self.channels)]

    @staticmethod
    def _init(i: int) -> bytes:
        return struct.pack(">II", 0x11223344, 1) + bytes(16) + bytes([i]) + bytes(7 + 32)

    # -- the guest ------------------------------------------------------------------
    def page(self, block: bytes, off: int) -> bytes:
        return self.memory.get((block, off), bytes(PAGE))

    def write(self, block: bytes, index: int, kind: str) -> None:
        """Change a page: ``same`` rewrites its content, ``new`` gives it new content,
        ``zero`` clears it."""
        key = (block, index * PAGE)
        if kind == "new":
            self.memory[key] = self.rnd.randbytes(PAGE)
        elif kind == "zero":
            self.memory.pop(key, None)

    def random_writes(self, n: int, same: float = 0.5, zero: float = 0.1) -> set[tuple[bytes, int]]:
        """``n`` writes to random pages; returns the pages dirtied."""
        dirty = set()
        names = list(self.blocks)
        for _ in range(n):
            block = self.rnd.choice(names)
            index = self.rnd.randrange(self.blocks[block])
            r = self.rnd.random()
            self.write(block, index, "same" if r < same else "zero" if r < same + zero else "new")
            dirty.add((block, index * PAGE))
        return dirty

    # -- the stream -----------------------------------------------------------------
    def _hdr(self, block: bytes, off: int, flags: int) -> bytes:
        if block == self._last_block:
            return struct.pack(">Q", off | flags | CONT)
        self._last_block = block
        return struct.pack(">Q", off | flags) + bytes([len(block)]) + block

    def start(self) -> None:
        total = sum(n * PAGE for n in self.blocks.values())
        body = struct.pack(">Q", total | MEM_SIZE)
        for name, n in self.blocks.items():
            body += bytes([len(name)]) + name + struct.pack(">Q", n * PAGE)
        self.main += b"\x08" + struct.pack(">HH", 1, 0)  # OPEN_RETURN_PATH
        self.main += b"\x01" + struct.pack(">I", 2) + b"\x03ram" + struct.pack(">II", 0, 4)
        self.main += body
        self._sync()
        self.main += struct.pack(">Q", EOS) + footer(2)

    def section(self, pages: set[tuple[bytes, int]], end: bool = False) -> None:
        """One RAM PART (or END) section sending ``pages`` with their current content."""
        self.main += (b"\x03" if end else b"\x02") + struct.pack(">I", 2)
        batch: list[tuple[bytes, int, bytes]] = []
        for block, off in sorted(pages):
            content = self.page(block, off)
            if content == bytes(PAGE):
                self.main += self._hdr(block, off, ZERO) + b"\0"
            elif self.channels:
                if (batch and batch[0][0] != block) or len(batch) == PACKET_PAGES:
                    self._packet(batch)
                    carry = batch[-1]
                    batch = []
                    if self.duplicate_boundaries and carry[0] == block:
                        if self.rnd.random() < 0.5:  # the guest writes it between the copies
                            self.write(carry[0], carry[1] // PAGE, "new")
                            self.redirty.add(carry[:2])
                        batch.append((carry[0], carry[1], self.page(carry[0], carry[1])))
                batch.append((block, off, content))
            else:
                self.main += self._hdr(block, off, PAGEF) + content
        if batch:
            self._packet(batch)
        self._sync()
        self.main += struct.pack(">Q", EOS) + footer(2)

    def finish(self) -> None:
        self.main += b"\x04" + struct.pack(">I", 9) + b"\x06timer0" + struct.pack(">II", 0, 2)
        self.main += self.rnd.randbytes(40) + footer(9) + b"\x00"
        self.main += b"\x06" + struct.pack(">I", 2) + b"{}"

    def _packet(self, batch: list[tuple[bytes, int, bytes]], sync: bool = False,
                channel: int | None = None) -> None:
        if channel is None:
            channel = self._next_channel
            self._next_channel = (self._next_channel + 1) % self.channels
        block = batch[0][0] if batch else b""
        offsets = [off for _, off, _ in batch] + [0] * (PACKET_PAGES - len(batch))
        self._packet_num += 1
        head = struct.pack(">IIIIIIQ", 0x11223344, 1, 1 if sync else 0, PACKET_PAGES,
                           len(batch), len(batch) * PAGE, self._packet_num)
        head += bytes(32) + block.ljust(256, b"\0") + struct.pack(f">{PACKET_PAGES}Q", *offsets)
        self.multifd[channel] += head + b"".join(c for _, _, c in batch)

    def _dirty(self, pages: set[tuple[bytes, int]]) -> set[tuple[bytes, int]]:
        pages |= self.redirty
        self.redirty = set()
        return pages

    def _sync(self) -> None:
        for i in range(self.channels):
            self._packet([], sync=True, channel=i)

    def migrate(self, iterations: int = 4, writes: int = 200, same: float = 0.5,
                zero: float = 0.1) -> None:
        """A whole migration: first pass over every page, then ``iterations`` passes over
        the pages dirtied since, then stop-and-copy."""
        self.start()
        for block, n in self.blocks.items():
            for i in range(n):
                if self.rnd.random() < 0.6:
                    self.write(block, i, "new")
        everything = {(b, i * PAGE) for b, n in self.blocks.items() for i in range(n)}
        self.section(everything)
        for _ in range(iterations):
            self.section(self._dirty(self.random_writes(writes, same, zero)))
        self.section(self._dirty(self.random_writes(writes // 4, same, zero)), end=True)
        self.finish()
