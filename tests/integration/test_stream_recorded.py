"""The Perf+ rewriter on real QEMU 7.2 streams recorded here: main channel only and
multifd, with same-content, zero-page and random-write workloads. The rewritten streams
must load, in an independent model of QEMU's loader, into exactly the memory the original
streams load into."""

from __future__ import annotations

import pytest

from perfplus_agent.lab.stream_capture import capture_migration
from perfplus_agent.stream import StreamSession
from tests.stream_model import load
from tests.stream_replay import rewrite

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SAME_AND_ZERO = "-m 64 -r 3000 -s 0.5 -z 0.1 -i 0"
RANDOM_WORDS = "-m 64 -r 3000 -x -i 0"


@pytest.mark.parametrize(("workload", "channels"), [
    (SAME_AND_ZERO, 0), (SAME_AND_ZERO, 2), (RANDOM_WORDS, 0)])
@pytest.mark.parametrize("algorithm", ["highwayhash", "md5"])
def test_recorded_stream_rewrites_to_the_same_memory(tmp_path_factory, recorded, workload,
                                                     channels, algorithm):
    captured = recorded(workload, channels)
    session = StreamSession(channels, algorithm)
    out = rewrite(session, captured.channels, seed=channels)
    original = load(captured.channels[0], captured.channels[1:])
    assert load(out[0], out[1:]).pages == original.pages
    totals = session.stats.totals()
    assert session.stats.mode == "filter"
    # one iteration per RAM section; a multifd channel may still carry an empty packet after
    # its final SYNC (counted in a last iteration of its own, with no page in it)
    iterations = session.stats.iterations
    assert len(iterations) in (original.ram_sections, original.ram_sections + 1)
    assert all(not (it.pages_seen or it.zero_pages or it.other_pages)
               for it in iterations[original.ram_sections:])
    assert totals["pages_seen"] == totals["pages_forwarded"] + totals["pages_dropped"]
    if workload == SAME_AND_ZERO:
        assert totals["pages_dropped"] > 0, totals
    # Everything after the RAM is the same device state, byte for byte.
    assert out[0][-2000:] == captured.channels[0][-2000:]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    cache: dict[tuple[str, int], object] = {}

    def get(workload: str, channels: int):
        key = (workload, channels)
        if key not in cache:
            cache[key] = capture_migration(tmp_path_factory.mktemp("capture"), workload,
                                           channels=channels, max_bandwidth=48 << 20)
        return cache[key]
    return get
