"""Byte for byte: lab guests migrated through the Perf+ daemons (filter on) arrive with
exactly the source's memory. Both ends are kept paused after the migration (the source
in postmigrate, the destination started with -S) and their whole RAM is compared; then
the destination runs on and the guest's own digests check its working set."""

from __future__ import annotations

import filecmp

import pytest

from perfplus_agent.lab.daemon_pair import DaemonPair, migration_settings
from perfplus_agent.lab.direct_guest import DirectGuest
from perfplus_agent.stream import StreamSession
from perfplus_agent.stream.transform import FilterTransform

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WORKLOADS = {
    "same-content": "-m 64 -r 3000 -s 0.7 -z 0 -i 0",
    "zero-pages": "-m 64 -r 3000 -s 0.3 -z 0.4 -i 0",
    "random-content": "-m 64 -r 3000 -x -i 0",
}


@pytest.fixture(scope="module")
def pair():
    with DaemonPair() as daemons:
        yield daemons


def _guests(tmp_path, workload: str, caps: dict, params: dict) -> tuple[DirectGuest,
                                                                         DirectGuest]:
    src = DirectGuest(tmp_path, "src", 256, workload).start()
    dst = DirectGuest(tmp_path, "dst", 256, incoming=True).start()
    try:
        src.wait_ready()
        for guest in (src, dst):
            guest.configure_migration(caps, params)
    except BaseException:
        src.stop()
        dst.stop()
        raise
    return src, dst


def _assert_identical_and_live(tmp_path, src: DirectGuest, dst: DirectGuest) -> None:
    """Both ends paused with the same RAM; then the destination runs and checks itself."""
    assert dst.wait_incoming_done() == "paused"
    assert src.cmd("query-status")["status"] == "postmigrate"
    a, b = src.dump_ram(tmp_path / "src.ram"), dst.dump_ram(tmp_path / "dst.ram")
    assert a.stat().st_size == b.stat().st_size > 256 << 20
    assert filecmp.cmp(a, b, shallow=False), "guest memory differs after the migration"
    dst.cmd("cont")
    assert dst.console.command("v", r"^VERIFY", 30).startswith("VERIFY OK")


@pytest.mark.parametrize("channels", [0, 2], ids=["main-channel", "multifd"])
@pytest.mark.parametrize("workload", sorted(WORKLOADS))
def test_filtered_migration_is_byte_for_byte(tmp_path, pair, workload, channels):
    src, dst = _guests(tmp_path, WORKLOADS[workload],
                       *migration_settings(channels, max_bandwidth=48 << 20))
    try:
        answer = pair.migrate(src, dst, channels=channels)
        assert answer["ok"], answer
        perfplus = answer["perfplus"]
        assert perfplus["mode"] == "filter", perfplus
        totals = perfplus["totals"]
        assert totals["pages_seen"] == totals["pages_forwarded"] + totals["pages_dropped"] > 0
        if workload == "same-content":
            assert totals["pages_dropped"] > 0, totals
        _assert_identical_and_live(tmp_path, src, dst)
    finally:
        src.stop()
        dst.stop()


# Streams Perf+ does not parse, from a real QEMU: the filter stands aside from the start and
# the migration goes through verbatim.
UNPARSED = {
    "multifd-zlib": (2, {}, {"multifd-compression": "zlib"}, "compressed"),
    "postcopy-advise": (0, {"postcopy-ram": True}, {}, "POSTCOPY"),
}


@pytest.mark.parametrize("case", sorted(UNPARSED))
def test_a_stream_perfplus_cannot_parse_passes_verbatim(tmp_path, pair, case):
    channels, more_caps, more_params, reason = UNPARSED[case]
    caps, params = migration_settings(channels, max_bandwidth=48 << 20)
    src, dst = _guests(tmp_path, WORKLOADS["same-content"], {**caps, **more_caps},
                       {**params, **more_params})
    try:
        answer = pair.migrate(src, dst, channels=channels)
        assert answer["ok"], answer
        perfplus = answer["perfplus"]
        assert perfplus["mode"] == "passthrough", perfplus
        assert reason in perfplus["passthrough_reason"], perfplus
        assert perfplus["totals"]["pages_dropped"] == 0
        assert answer["relay"]["bytes_out"] == answer["relay"]["bytes_in"]
        _assert_identical_and_live(tmp_path, src, dst)
    finally:
        src.stop()
        dst.stop()


class _StandAsideMidway:
    """The Perf+ filter, made to stand aside once it has dropped pages and the third pass
    has begun: what any channel does when it meets something it cannot parse."""

    def __init__(self, channels: int) -> None:
        self.session = StreamSession(channels)

    def __call__(self, first_bytes: bytes, index: int) -> _StandAsideMidway.Channel:
        return self.Channel(self.session, index)

    class Channel(FilterTransform):
        def feed(self, chunk: bytes):
            stats = self.session.stats
            if (self.session.filtering and len(stats.iterations) >= 3
                    and stats.totals()["pages_dropped"] > 0):
                self.session.stand_aside("injected: a channel met what it cannot parse")
            return super().feed(chunk)


@pytest.mark.parametrize("channels", [0, 2], ids=["main-channel", "multifd"])
def test_standing_aside_mid_migration_keeps_memory_identical(tmp_path, channels):
    injected = _StandAsideMidway(channels)
    src, dst = _guests(tmp_path, WORKLOADS["same-content"],
                       *migration_settings(channels, max_bandwidth=48 << 20))
    try:
        with DaemonPair(port_range=(47600, 47699), make_transform=injected) as daemons:
            answer = daemons.migrate(src, dst, channels=channels)
        assert answer["ok"], answer
        stats = injected.session.stats
        assert stats.mode == "passthrough" and "injected" in stats.passthrough_reason
        assert stats.totals()["pages_dropped"] > 0  # dropped before standing aside
        assert answer["relay"]["bytes_out"] < answer["relay"]["bytes_in"]
        _assert_identical_and_live(tmp_path, src, dst)
    finally:
        src.stop()
        dst.stop()
