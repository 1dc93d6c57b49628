"""``perfplus bench proxy`` on a small scale, as a user runs it: direct, bare-relay (TCP and
UNIX sockets to QEMU) and daemon-carried migrations of filled guests, with their memory intact
and consistent figures."""

import json
import os

import pytest

from perfplus_agent.bench.proxy_bench import filled_mib
from tests.conftest import perfplus

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(900)
def test_bench_proxy_compares_daemons_with_direct_migration(tmp_path):
    out = tmp_path / "proxy.json"
    res = perfplus("bench", "proxy", "--memory", "256", "--memory", "384", "--rounds", "1",
                   "--json", str(out), timeout=800)
    assert res.returncode == 0, res.stderr[-4000:]
    data = json.loads(out.read_text())
    runs = data["samples"]["runs"]
    assert [(r["memory_mib"], r["variant"], r["warmup"]) for r in runs] == [
        (256, "daemons", True), (256, "direct", False), (256, "relay", False),
        (256, "relay-unix", False), (256, "daemons", False), (384, "direct", False),
        (384, "relay", False), (384, "relay-unix", False), (384, "daemons", False)]
    for run in runs:
        assert run["ok"], run["error"]
        assert run["memory_intact"], run
        # the guest's random content crossed at least once
        assert run["qemu_bytes"] > filled_mib(run["memory_mib"]) << 20
        assert run["throughput_mib_s"] > 0
        # the whole machine's busy time covers both daemons' and fits in its CPUs
        assert run["machine_cpu_s"] >= run["src_daemon_cpu_s"] + run["dst_daemon_cpu_s"] - 0.05
        assert 0 < run["machine_busy_cores"] <= os.cpu_count() + 0.1
        if run["variant"] == "daemons":
            assert run["src_daemon_cpu_s"] > 0 and run["dst_daemon_cpu_s"] > 0
            assert run["wire_bytes"] >= run["qemu_bytes"] * 0.9
            assert 0 < run["filter_table_bytes"] < run["memory_mib"] << 20 >> 7
        else:
            assert run["wire_bytes"] == 0
    summary = data["summary"]
    assert set(summary["by_size"]) == {"256", "384"}
    assert 0 < summary["throughput_ratio"] < 10
    assert 0 < summary["relay_ratio"] < 10 and 0 < summary["daemons_vs_relay"] < 10
    assert 0 < summary["relay_unix_ratio"] < 10
    for size in summary["by_size"].values():
        assert size["daemons_machine_cpu_s_per_gib"] > 0
        assert size["direct_machine_cpu_s_per_gib"] > 0
    assert summary["filter_table_mib_per_gib"] == pytest.approx(4.25, abs=0.1)
    assert "daemon_rss_mib_per_gib" in summary and summary["all_memory_intact"] is True
    assert "perfplus bench proxy: unshaped link" in res.stdout
