"""RamRewriter: the main channel's RAM records, checked against a reference QEMU loader.

The proof of the rewriter: a simulated source writes random pages over several iterations
and several blocks, sends its dirty pages as QEMU 7.2 does (CONTINUE iff the block is the
last one it sent), the stream goes through the rewriter, and an independent reference
loader (last_recv_block semantics, like ram_load_precopy) applies the output; the
destination image must equal the source's memory.
"""

import random
import struct
import zlib

import pytest

from perfplus_agent import perfplus_c as pc

PAGE = 4096
ZERO, MEM_SIZE, PAGE_F, EOS_F, CONT, XBZRLE, COMPRESS = 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x100


# ---------------------------------------------------------------- the source side

def uleb(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def xbzrle_encode(old: bytes, new: bytes) -> bytes | None:
    """One zero run then one non-zero run covering every changed byte (valid XBZRLE)."""
    diff = [i for i in range(PAGE) if old[i] != new[i]]
    if not diff:
        return None
    lo, hi = diff[0], diff[-1] + 1
    enc = uleb(lo) + uleb(hi - lo) + new[lo:hi]
    return enc if len(enc) <= PAGE else None


class Source:
    """Emits RAM records like QEMU 7.2's ram_save_* (canonical CONTINUE on last_sent_block)."""

    def __init__(self, blocks: dict[bytes, int]):
        self.blocks = blocks
        self.last_sent = None

    def header(self, block: bytes, offset: int, flags: int) -> bytes:
        if block == self.last_sent:
            return struct.pack(">Q", offset | flags | CONT)
        self.last_sent = block
        return struct.pack(">Q", offset | flags) + bytes([len(block)]) + block

    def mem_size(self) -> bytes:
        out = struct.pack(">Q", sum(self.blocks.values()) | MEM_SIZE)
        for name, length in self.blocks.items():
            out += bytes([len(name)]) + name + struct.pack(">Q", length)
        return out

    def page(self, block, offset, data):
        return self.header(block, offset, PAGE_F) + data

    def zero(self, block, offset):
        return self.header(block, offset, ZERO) + b"\x00"

    def xbzrle(self, block, offset, enc):
        return self.header(block, offset, XBZRLE) + b"\x01" + struct.pack(">H", len(enc)) + enc

    def compressed(self, block, offset, data):
        z = zlib.compress(data)
        return self.header(block, offset, COMPRESS) + struct.pack(">I", len(z)) + z

    @staticmethod
    def eos() -> bytes:
        return struct.pack(">Q", EOS_F)


# ---------------------------------------------------------------- the reference loader

def xbzrle_decode(enc: bytes, page: bytearray) -> None:
    i = pos = 0

    def read_uleb():
        nonlocal i
        n = shift = 0
        while True:
            b = enc[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return n

    while i < len(enc):
        pos += read_uleb()
        if i == len(enc):
            break
        n = read_uleb()
        page[pos:pos + n] = enc[i:i + n]
        i += n
        pos += n


class Loader:
    """Applies RAM records to a dict of pages exactly as QEMU's loader resolves them."""

    def __init__(self):
        self.blocks: dict[bytes, int] = {}
        self.mem: dict[tuple[bytes, int], bytes] = {}
        self.last_recv = None
        self.eos = 0

    def page(self, block, off) -> bytes:
        return self.mem.get((block, off), bytes(PAGE))

    def load(self, s: bytes) -> None:
        i = 0
        while i < len(s):
            hdr, = struct.unpack_from(">Q", s, i)
            i += 8
            flags, addr = hdr & 0xFFF, hdr & ~0xFFF
            kind = flags & ~CONT
            if kind == EOS_F:
                self.eos += 1
                continue
            if kind == MEM_SIZE:
                total = 0
                while total < addr:
                    n = s[i]
                    name = s[i + 1:i + 1 + n]
                    length, = struct.unpack_from(">Q", s, i + 1 + n)
                    self.blocks[name] = length
                    total += length
                    i += 1 + n + 8
                continue
            if flags & CONT:
                assert self.last_recv is not None, "CONTINUE without a block"
                block = self.last_recv
            else:
                n = s[i]
                block = s[i + 1:i + 1 + n]
                i += 1 + n
                assert block in self.blocks, block
                self.last_recv = block
            assert addr < self.blocks[block]
            if kind == ZERO:
                self.mem[(block, addr)] = bytes([s[i]]) * PAGE
                i += 1
            elif kind == PAGE_F:
                self.mem[(block, addr)] = s[i:i + PAGE]
                i += PAGE
            elif kind == XBZRLE:
                assert s[i] == 1
                n, = struct.unpack_from(">H", s, i + 1)
                page = bytearray(self.page(block, addr))
                xbzrle_decode(s[i + 3:i + 3 + n], page)
                self.mem[(block, addr)] = bytes(page)
                i += 3 + n
            elif kind == COMPRESS:
                n, = struct.unpack_from(">I", s, i)
                self.mem[(block, addr)] = zlib.decompress(s[i + 4:i + 4 + n])
                i += 4 + n
            else:
                raise AssertionError(f"unexpected flags {flags:#x}")


# ---------------------------------------------------------------- drivers

def feed_all(rw: pc.RamRewriter, chunks) -> bytes:
    """Feeds chunks as they would arrive from a socket; returns the concatenated output."""
    out, pending = [], b""
    for chunk in chunks:
        pending += chunk
        while True:
            o, consumed, status = rw.feed(pending)
            out.append(o)
            pending = pending[consumed:]
            if status == pc.EOS and pending:
                continue
            assert status in (pc.NEED_MORE, pc.EOS), (status, rw.last_error)
            break
    assert pending == b""
    return b"".join(out)


def random_chunks(rng: random.Random, s: bytes):
    i = 0
    while i < len(s):
        n = rng.choice([1, 7, 9, 100, 4096, 4105, 20000, 1 << 20])
        yield s[i:i + n]
        i += n


def new_rewriter(alg="highwayhash", **kw):
    f = pc.Filter(alg, pc.new_key(alg))
    return pc.RamRewriter(f, **kw)


# ---------------------------------------------------------------- the property test

def simulate(seed: int, alg: str = "highwayhash", use_xbzrle=True, use_compress=True):
    rng = random.Random(seed)
    blocks = {b"pc.ram": 24 * PAGE, b"pc.bios": 4 * PAGE, b"0000:00:02.0/vga.vram": 8 * PAGE}
    # a small pool of contents per page makes repeats (and so drops) frequent
    pool = [rng.randbytes(PAGE) for _ in range(5)]
    src_mem = {(b, o): bytes(PAGE) for b, n in blocks.items() for o in range(0, n, PAGE)}
    source = Source(blocks)
    sent_copy = {}  # the source's XBZRLE cache: what it last sent per page
    stream = [source.mem_size(), source.eos()]
    dirty = list(src_mem)  # first round: everything
    for _round in range(6):
        rng.shuffle(dirty)
        if rng.random() < 0.5:  # QEMU walks blocks in order: also exercise that
            dirty.sort(key=lambda k: (list(blocks).index(k[0]), k[1]))
        for key in dirty:
            block, off = key
            data = src_mem[key]
            if data == bytes(PAGE):
                stream.append(source.zero(block, off))
            else:
                r = rng.random()
                enc = xbzrle_encode(sent_copy[key], data) if (
                    use_xbzrle and r < 0.15 and key in sent_copy) else None
                if enc is not None:
                    stream.append(source.xbzrle(block, off, enc))
                elif use_compress and r > 0.9:
                    stream.append(source.compressed(block, off, data))
                else:
                    stream.append(source.page(block, off, data))
            sent_copy[key] = data
            if rng.random() < 0.2:
                stream.append(source.eos())
        stream.append(source.eos())
        # the guest writes: same content, pool content, zero, small edits
        dirty = rng.sample(list(src_mem), rng.randint(1, len(src_mem)))
        for key in dirty:
            r = rng.random()
            if r < 0.35:
                continue  # rewritten with the same bytes
            if r < 0.7:
                src_mem[key] = rng.choice(pool)
            elif r < 0.8:
                src_mem[key] = bytes(PAGE)
            else:
                page = bytearray(src_mem[key])
                page[rng.randrange(PAGE)] ^= 1 + rng.randrange(255)
                src_mem[key] = bytes(page)
        dirty = list(dict.fromkeys(dirty))
    # final round: send what is still dirty, as the completion stage does
    for key in dirty:
        stream.append(source.page(*key, src_mem[key]) if src_mem[key] != bytes(PAGE)
                      else source.zero(*key))
    stream.append(source.eos())
    return b"".join(stream), src_mem


@pytest.mark.parametrize("seed", range(12))
def test_destination_image_equals_source_memory(seed):
    alg = pc.ALGORITHMS[seed % 3]
    stream, src_mem = simulate(seed, alg)
    rw = new_rewriter(alg)
    out = feed_all(rw, random_chunks(random.Random(seed), stream))
    dst = Loader()
    dst.load(out)
    for key, data in src_mem.items():
        assert dst.page(*key) == data, key
    c = rw.counters
    assert c["pages_dropped"] > 0 and c["pages_forwarded"] > 0
    assert c["pages_seen"] == c["pages_dropped"] + c["pages_forwarded"]
    assert c["bytes_in"] == len(stream) and c["bytes_out"] == len(out) < len(stream)
    assert c["eos"] == dst.eos
    # the unfiltered stream gives the same image (the simulation itself is right)
    ref = Loader()
    ref.load(stream)
    assert ref.mem.keys() <= src_mem.keys()
    assert all(ref.page(*k) == v for k, v in src_mem.items())


def test_rewriter_output_of_unfiltered_first_round_is_identical():
    stream, _ = simulate(99, use_xbzrle=False, use_compress=False)
    first_round_end = stream.index(struct.pack(">Q", EOS_F), 100)
    head = stream[:first_round_end + 8]
    rw = new_rewriter()
    # nothing to drop in the first round: canonical re-emission is byte-identical
    out, consumed, status = rw.feed(head)
    assert (out, consumed, status) == (head[:len(out)], len(out), pc.EOS)


# ---------------------------------------------------------------- splits

def small_stream():
    src = Source({b"pc.ram": 8 * PAGE, b"rom": PAGE})
    p1, p2 = bytes([1]) * PAGE, bytes([2]) * PAGE
    return b"".join([
        src.mem_size(), src.eos(),
        src.page(b"pc.ram", 0, p1), src.zero(b"pc.ram", PAGE), src.page(b"rom", 0, p2),
        src.eos(),
        src.page(b"pc.ram", 0, p1),  # dropped: it carried the idstr
        src.xbzrle(b"pc.ram", PAGE, b"\x00\x02ab"),  # so this needs "pc.ram" re-inserted
        src.compressed(b"pc.ram", 2 * PAGE, p2),
        src.page(b"rom", 0, p2),  # dropped
        src.zero(b"rom", 0),
        src.eos(),
    ])


def test_every_split_point_gives_the_uncut_output():
    stream = small_stream()
    whole = feed_all(new_rewriter("md5"), [stream])
    assert len(whole) < len(stream)
    for k in range(len(stream) + 1):
        assert feed_all(new_rewriter("md5"), [stream[:k], stream[k:]]) == whole, k


def test_need_more_reports_the_incomplete_record_start():
    stream = small_stream()
    rw = new_rewriter()
    mem = Source({b"pc.ram": 8 * PAGE, b"rom": PAGE}).mem_size()
    out, consumed, status = rw.feed(stream[:len(mem) - 1])
    assert (out, consumed, status) == (b"", 0, pc.NEED_MORE)
    assert rw.filter.blocks == []  # nothing registered from an incomplete MEM_SIZE
    out, consumed, status = rw.feed(stream[:len(mem) + 8 + 5])
    assert (consumed, status) == (len(mem) + 8, pc.EOS)
    out, consumed, status = rw.feed(stream[len(mem) + 8:len(mem) + 8 + 8 + 1 + 6 + 4095])
    assert (out, consumed, status) == (b"", 0, pc.NEED_MORE)
    assert rw.counters["pages_seen"] == 0


def test_canonical_reemission_after_drops():
    src = Source({b"a": 4 * PAGE, b"b": 4 * PAGE})
    pa, pb = bytes([7]) * PAGE, bytes([9]) * PAGE
    rw = new_rewriter()
    assert rw.feed(src.mem_size() + src.eos())[2] == pc.EOS
    rw.feed(src.page(b"a", 0, pa) + src.page(b"b", 0, pb) + src.eos())
    # round 2: a page 0 unchanged (dropped; it named a), then a page 1 with CONTINUE
    rec_a0 = src.page(b"a", 0, pa)
    rec_a1 = src.page(b"a", PAGE, pb)
    assert rec_a1[:8] == struct.pack(">Q", PAGE | PAGE_F | CONT)
    out, consumed, status = rw.feed(rec_a0 + rec_a1)
    # re-emitted with the idstr: the destination's last block is still b
    assert (out, consumed, status) == (
        struct.pack(">Q", PAGE | PAGE_F) + b"\x01a" + pb, len(rec_a0 + rec_a1), pc.NEED_MORE)
    # and a source record naming the block the destination already has becomes CONTINUE
    rec_a2 = struct.pack(">Q", 2 * PAGE | PAGE_F) + b"\x01a" + pa
    assert rw.feed(rec_a2)[0] == struct.pack(">Q", 2 * PAGE | PAGE_F | CONT) + pa


def test_diverged_tracks_source_vs_emitted():
    src = Source({b"a": 4 * PAGE, b"b": 4 * PAGE})
    pa = bytes([7]) * PAGE
    rw = new_rewriter()
    rw.feed(src.mem_size())
    assert not rw.diverged
    rw.feed(src.page(b"a", 0, pa) + src.page(b"b", 0, pa))
    assert not rw.diverged
    rw.feed(src.page(b"a", 0, pa))  # dropped: the source now means a, destination has b
    assert rw.diverged
    out, _, _ = rw.feed(src.zero(b"a", PAGE))
    assert out == struct.pack(">Q", PAGE | ZERO) + b"\x01a" + b"\x00"
    assert not rw.diverged


def test_zero_xbzrle_compress_invalidate_tags():
    src = Source({b"a": 4 * PAGE})
    pa = bytes([7]) * PAGE
    rw = new_rewriter()
    rw.feed(src.mem_size())
    for record in (lambda: src.zero(b"a", 0), lambda: src.xbzrle(b"a", 0, b"\x00\x01z"),
                   lambda: src.compressed(b"a", 0, pa)):
        out, _, _ = rw.feed(src.page(b"a", 0, pa))
        assert out, rw.last_error  # forwarded: the tag was invalidated by the previous record
        assert rw.feed(src.page(b"a", 0, pa))[0] == b""  # unchanged: dropped
        assert rw.feed(record())[0]
    c = rw.counters
    assert (c["zero_pages"], c["xbzrle_pages"], c["compressed_pages"]) == (1, 1, 1)
    assert (c["pages_forwarded"], c["pages_dropped"]) == (3, 3)


def test_mem_size_options_and_registration():
    f = pc.Filter("siphash", pc.new_key("siphash"))
    rw = pc.RamRewriter(f, postcopy_page_size=True, ignore_shared=True)
    rec = struct.pack(">Q", 3 * PAGE | MEM_SIZE) + b"\x02aa" + struct.pack(">QQQ", PAGE, PAGE, 0)
    rec += b"\x01b" + struct.pack(">QQQ", 2 * PAGE, 2 * 1024 * 1024, 0xFEE00000)
    out, consumed, status = rw.feed(rec + src_eos())
    assert (out, consumed, status) == (rec + src_eos(), len(rec) + 8, pc.EOS)
    assert f.blocks == [(b"aa", PAGE), (b"b", 2 * PAGE)]
    assert rw.feed(rec)[1:] == (len(rec), pc.NEED_MORE)  # same blocks again: accepted
    bad = struct.pack(">Q", 3 * PAGE | MEM_SIZE) + b"\x02aa" + struct.pack(">QQQ", 2 * PAGE, 0, 0)
    bad += b"\x01b" + struct.pack(">QQQ", PAGE, 0, 0)
    assert rw.feed(bad)[1:] == (0, pc.MALFORMED)
    assert "another length" in rw.last_error


def src_eos():
    return struct.pack(">Q", EOS_F)


def _ready():
    src = Source({b"a": 4 * PAGE})
    rw = new_rewriter()
    rw.feed(src.mem_size())
    return src, rw


@pytest.mark.parametrize("record", [
    struct.pack(">Q", 0x80),  # HOOK
    struct.pack(">Q", 0x01) + bytes(PAGE),  # FULL
    struct.pack(">Q", 0x200),  # MULTIFD_FLUSH (8.1+)
    struct.pack(">Q", 0x800),  # unknown bit
    struct.pack(">Q", PAGE_F | ZERO) + b"\x01a" + bytes(PAGE),  # two payload kinds
    struct.pack(">Q", CONT),  # no payload kind
    struct.pack(">Q", 0),
    struct.pack(">Q", EOS_F | CONT),
])
def test_unsupported(record):
    src, rw = _ready()
    good = src.zero(b"a", 0)
    out, consumed, status = rw.feed(good + record + good)
    assert (out, consumed, status) == (good, len(good), pc.UNSUPPORTED)
    assert rw.last_error


@pytest.mark.parametrize("record", [
    struct.pack(">Q", CONT | ZERO) + b"\x00",  # CONTINUE without a previous block
    struct.pack(">Q", PAGE_F) + b"\x01z" + bytes(PAGE),  # unknown idstr
    struct.pack(">Q", PAGE_F) + b"\x00" + bytes(PAGE),  # empty idstr
    struct.pack(">Q", 4 * PAGE | ZERO) + b"\x01a\x00",  # outside the block
    struct.pack(">Q", XBZRLE) + b"\x01a\x02" + struct.pack(">H", 1) + b"x",  # encoding 2
    struct.pack(">Q", XBZRLE) + b"\x01a\x01" + struct.pack(">H", 4097) + bytes(4097),
    struct.pack(">Q", COMPRESS) + b"\x01a" + struct.pack(">I", 8193) + bytes(8193),
    struct.pack(">Q", 2 * PAGE | MEM_SIZE) + b"\x01c" + struct.pack(">Q", 3 * PAGE),  # > total
    struct.pack(">Q", PAGE | MEM_SIZE) + b"\x00",  # empty idstr
    struct.pack(">Q", PAGE | MEM_SIZE) + b"\x01a" + struct.pack(">Q", PAGE),  # a is 4 pages
])
def test_malformed(record):
    src = Source({b"a": 4 * PAGE})
    rw = new_rewriter()
    head = src.mem_size() + src.eos()
    _, consumed, status = rw.feed(head)
    assert status == pc.EOS
    out, consumed, status = rw.feed(record + src.eos())
    assert (out, consumed, status) == (b"", 0, pc.MALFORMED), rw.last_error
    assert rw.last_error
    assert rw.counters["records"] == 2  # nothing of the bad record was counted


def test_eos_stops_right_after_it():
    src, rw = _ready()
    rest = src.zero(b"a", 0)
    out, consumed, status = rw.feed(src.eos() + rest)
    assert (out, consumed, status) == (src.eos(), 8, pc.EOS)
    assert rw.counters["eos"] == 1


def test_feed_accepts_any_buffer_and_refuses_non_buffers():
    src, rw = _ready()
    rec = src.zero(b"a", 0)
    assert rw.feed(memoryview(bytearray(rec)))[1] == len(rec)
    with pytest.raises(TypeError):
        rw.feed("text")
    with pytest.raises(TypeError):
        pc.RamRewriter(object())
