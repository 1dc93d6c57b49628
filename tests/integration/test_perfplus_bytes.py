"""Byte for byte: lab guests migrated through the Perf+ daemons (filter on) arrive with
exactly the source's memory. Both ends are kept paused after the migration (the source
in postmigrate, the destination started with -S) and their whole RAM is compared; then
the destination runs on and the guest's own digests check its working set."""

from __future__ import annotations

import filecmp

import pytest

from perfplus_agent.lab.daemon_pair import DaemonPair, migration_settings
from perfplus_agent.lab.direct_guest import DirectGuest

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


@pytest.mark.parametrize("channels", [0, 2], ids=["main-channel", "multifd"])
@pytest.mark.parametrize("workload", sorted(WORKLOADS))
def test_filtered_migration_is_byte_for_byte(tmp_path, pair, workload, channels):
    src = DirectGuest(tmp_path, "src", 256, WORKLOADS[workload]).start()
    dst = DirectGuest(tmp_path, "dst", 256, incoming=True).start()
    try:
        src.wait_ready()
        caps, params = migration_settings(channels, max_bandwidth=48 << 20)
        for guest in (src, dst):
            guest.configure_migration(caps, params)
        answer = pair.migrate(src, dst, channels=channels)
        assert answer["ok"], answer
        assert dst.wait_incoming_done() == "paused"
        assert src.cmd("query-status")["status"] == "postmigrate"
        a, b = src.dump_ram(tmp_path / "src.ram"), dst.dump_ram(tmp_path / "dst.ram")
        assert a.stat().st_size == b.stat().st_size > 256 << 20
        assert filecmp.cmp(a, b, shallow=False), "guest memory differs after the migration"
        perfplus = answer["perfplus"]
        assert perfplus["mode"] == "filter", perfplus
        totals = perfplus["totals"]
        assert totals["pages_seen"] == totals["pages_forwarded"] + totals["pages_dropped"] > 0
        if workload == "same-content":
            assert totals["pages_dropped"] > 0, totals
        dst.cmd("cont")
        assert dst.console.command("v", r"^VERIFY", 30).startswith("VERIFY OK")
    finally:
        src.stop()
        dst.stop()
