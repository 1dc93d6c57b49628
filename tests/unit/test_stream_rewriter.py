"""The Perf+ stream rewriter on crafted QEMU 7.2 streams, checked against an independent
model of QEMU's loader: the destination must end with exactly the source's memory."""

from __future__ import annotations

import contextlib
import random
import struct
import threading

import pytest

from perfplus_agent.stream import StreamAborted, StreamSession, channel_for
from tests.stream_builder import PAGE, GuestStream, footer
from tests.stream_model import load
from tests.stream_replay import rewrite

BLOCKS = {b"pc.ram": 96, b"pc.bios": 8, b"/rom@etc/acpi/tables": 3}


def _streams(g: GuestStream) -> list[bytes]:
    return [bytes(g.main)] + [bytes(c) for c in g.multifd]


@pytest.mark.parametrize("channels", [0, 1, 3])
@pytest.mark.parametrize("algorithm", ["highwayhash", "siphash", "md5"])
def test_destination_memory_equals_source(channels, algorithm):
    g = GuestStream(BLOCKS, channels=channels, seed=channels)
    g.migrate(iterations=5, writes=150)
    session = StreamSession(channels, algorithm)
    out = rewrite(session, _streams(g), seed=channels)
    original, rewritten = load(bytes(g.main), list(g.multifd)), load(out[0], out[1:])
    assert rewritten.pages == original.pages == g.memory
    totals = session.stats.totals()
    assert totals["pages_dropped"] > 50, totals
    assert totals["pages_seen"] == totals["pages_forwarded"] + totals["pages_dropped"]
    assert rewritten.page_records == original.page_records - totals["pages_dropped"]
    assert sum(map(len, out)) < sum(map(len, _streams(g))) - 50 * PAGE
    assert session.stats.mode == "filter"
    # One iteration per RAM section: START, the first pass, 5 passes, the END section.
    its = session.stats.iterations
    assert len(its) == 8 and its[-1].final and all(it.ended_s is not None for it in its)


@pytest.mark.parametrize("seed", range(6))
def test_random_chunking_and_workloads(seed):
    rnd = random.Random(seed)
    g = GuestStream(BLOCKS, channels=rnd.choice([0, 2]), seed=seed)
    g.migrate(iterations=rnd.randint(1, 6), writes=rnd.randint(10, 300),
              same=rnd.random(), zero=rnd.random() / 3)
    out = rewrite(StreamSession(g.channels), _streams(g), seed=seed)
    assert load(out[0], out[1:]).pages == g.memory


def test_zero_page_between_identical_multifd_sends_is_not_skipped():
    """Page X goes out via multifd with content A, is zeroed (main channel), then resent
    with A: the third send must reach the destination although A's tag was seen. The
    multifd channel is fed in full before the main channel starts: only the barrier keeps
    it from filtering interval 2 before the zero page of interval 1 is known."""
    g = GuestStream({b"pc.ram": 4}, channels=1, seed=7)
    g.start()
    g.write(b"pc.ram", 1, "new")
    content = g.page(b"pc.ram", PAGE)
    g.section({(b"pc.ram", PAGE)})
    g.write(b"pc.ram", 1, "zero")
    g.section({(b"pc.ram", PAGE)})
    g.memory[(b"pc.ram", PAGE)] = content
    g.section({(b"pc.ram", PAGE)}, end=True)
    g.finish()
    session = StreamSession(1)
    outputs: list[bytes] = [b"", b""]

    def pump(i: int) -> None:
        ch = channel_for(session, i)
        outputs[i] = b"".join(ch.feed(_streams(g)[i])) + ch.finish()

    multifd = threading.Thread(target=pump, args=(1,))
    multifd.start()
    multifd.join(0.5)
    assert multifd.is_alive(), "the multifd channel must wait at the barrier"
    pump(0)
    multifd.join(10)
    assert load(outputs[0], outputs[1:]).pages == g.memory == {(b"pc.ram", PAGE): content}


def test_barrier_timeout_aborts():
    g = GuestStream({b"pc.ram": 4}, channels=1)
    g.migrate(iterations=1, writes=2)
    session = StreamSession(1, barrier_timeout_s=0.3)
    with pytest.raises(StreamAborted, match="multifd channels did not reach SYNC"):
        list(channel_for(session, 0).feed(bytes(g.main)))


def _passes_verbatim(streams: list[bytes], channels: int = 0) -> StreamSession:
    session = StreamSession(channels)
    assert rewrite(session, streams) == streams
    assert session.stats.mode == "passthrough"
    return session


def test_unknown_iterable_section_passes_verbatim():
    g = GuestStream({b"pc.ram": 8})
    g.start()
    g.main += b"\x01" + struct.pack(">I", 3) + b"\x05block" + struct.pack(">II", 0, 1)
    g.main += struct.pack(">Q", 0x02) + footer(3)
    g.section({(b"pc.ram", 0)})
    session = _passes_verbatim([bytes(g.main)])
    assert "block" in session.stats.passthrough_reason


@pytest.mark.parametrize("cmd", [3, 7, 8, 77])
def test_postcopy_colo_and_unknown_commands_pass_verbatim(cmd):
    g = GuestStream({b"pc.ram": 8})
    g.main += b"\x08" + struct.pack(">HH", cmd, 16) + bytes(16)
    g.start()
    g.section({(b"pc.ram", 0)}, end=True)
    g.finish()
    _passes_verbatim([bytes(g.main)])


def test_tls_or_garbage_passes_verbatim():
    rnd = random.Random(3)
    garbage = b"\x16\x03\x01" + rnd.randbytes(100_000)
    _passes_verbatim([garbage])


def test_unknown_stream_version_passes_verbatim():
    _passes_verbatim([b"QEVM" + struct.pack(">I", 4) + bytes(1000)])


def test_compressed_multifd_channel_passes_verbatim():
    g = GuestStream({b"pc.ram": 8}, channels=1)
    g.migrate(iterations=2, writes=10)
    chan = bytearray(g.multifd[0])
    struct.pack_into(">I", chan, 64 + 8, 1 << 1)  # zlib on the first packet
    out = rewrite(StreamSession(1), [bytes(g.main), bytes(chan)])
    assert out[1] == bytes(chan)


def test_unknown_element_after_drops_aborts_instead_of_guessing():
    """Dropped records make the destination's last block differ from the source's; an
    element the parser does not know cannot then be passed through unchanged."""
    g = GuestStream({b"pc.ram": 4, b"pc.bios": 4})
    g.start()
    g.write(b"pc.ram", 0, "new")
    g.write(b"pc.bios", 0, "new")
    both = {(b"pc.ram", 0), (b"pc.bios", 0)}
    g.section(both)  # sent in order pc.bios, pc.ram
    g.section({(b"pc.bios", 0)})  # unchanged, dropped: the source last named pc.bios
    g.main += b"\x09junk"
    with pytest.raises(StreamAborted, match="last RAM block differ"):
        rewrite(StreamSession(0), [bytes(g.main)])


def test_malformed_ram_record_aborts():
    g = GuestStream({b"pc.ram": 4})
    g.start()
    g.main += b"\x02" + struct.pack(">I", 2) + struct.pack(">Q", 0x08) + b"\x05nope!" + bytes(PAGE)
    with pytest.raises(StreamAborted, match="malformed RAM record"):
        rewrite(StreamSession(0), [bytes(g.main)])


def test_mutated_streams_never_crash():
    """Flipped bytes anywhere: the rewriter passes through, aborts cleanly, or (when the
    damage is inside page data) forwards it; it never raises anything else or hangs."""
    g = GuestStream({b"pc.ram": 16}, seed=5)
    g.migrate(iterations=2, writes=20)
    base = bytes(g.main)
    rnd = random.Random(11)
    for _ in range(300):
        data = bytearray(base)
        for _ in range(rnd.randint(1, 4)):
            data[rnd.randrange(len(data))] = rnd.randrange(256)
        with contextlib.suppress(StreamAborted):
            rewrite(StreamSession(0, barrier_timeout_s=1), [bytes(data)], seed=rnd.randrange(99))


@pytest.mark.parametrize("seed", range(8))
def test_pages_sent_twice_on_two_channels_in_one_interval(seed):
    """QEMU 7.2 sends a full multifd batch's last page again as the next batch's first, on
    another channel, with the guest possibly writing in between: the destination keeps
    either copy, so a later resend of one of them must never be dropped."""
    g = GuestStream({b"pc.ram": 600}, channels=2, seed=seed, duplicate_boundaries=True)
    g.migrate(iterations=4, writes=400, same=0.6, zero=0.05)
    session = StreamSession(2)
    out = rewrite(session, _streams(g), seed=seed)
    original = load(bytes(g.main), list(g.multifd))
    assert original.pages == g.memory, "the builder's migration itself must settle"
    assert load(out[0], out[1:]).pages == g.memory


def test_no_multifd_channel_enters_the_next_interval_before_every_channel_synced():
    """The destination releases its receive threads only once every channel reached the
    SYNC (and the main channel the end of section): the mirror must not let one channel run
    ahead, or the tags would see two channels' copies of a page in another order than the
    destination writes them."""
    session = StreamSession(2, barrier_timeout_s=0.3)
    session.multifd_passed_sync(0)
    session.main_passed_eos()
    with pytest.raises(StreamAborted, match="did not reach barrier #1"):
        session.multifd_wait(1)  # channel 1 is still in interval 0

    session = StreamSession(2, barrier_timeout_s=5)
    session.multifd_passed_sync(0)
    session.main_passed_eos()
    released = threading.Event()
    waiter = threading.Thread(target=lambda: (session.multifd_wait(1), released.set()))
    waiter.start()
    assert not released.wait(0.3)
    session.multifd_passed_sync(1)
    assert released.wait(5)
    waiter.join(5)
