"""``perfplus bench migrate`` on a small scale, as a user runs it: every variant migrates the
guest through the lab's daemons with its memory intact, and the figures are consistent."""

import json

import pytest

from tests.conftest import perfplus

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(1500)
def test_bench_migrate_compares_perfplus_plain_and_xbzrle(tmp_path):
    out = tmp_path / "migrate.json"
    res = perfplus("bench", "migrate", "--memory", "128", "--link", "64mibps",
                   "--scenario", "converge", "--scenario", "random", "--json", str(out),
                   timeout=1200)
    assert res.returncode == 0, res.stderr[-4000:]
    data = json.loads(out.read_text())
    runs = {(r["scenario"], r["variant"]): r for r in data["samples"]["runs"]}
    assert set(runs) == {("converge", v) for v in ("plain", "perfplus", "xbzrle-64",
                                                   "xbzrle-full")} | {
        ("random", "plain"), ("random", "perfplus")}
    for key, run in runs.items():
        assert run["ok"], (key, run["error"])
        assert run["memory_intact"], key
        assert run["wire_bytes"] > 0 and run["passes"] >= 1, key
    plain, pp = runs[("converge", "plain")], runs[("converge", "perfplus")]
    # half of the guest's writes leave a page's content as it was: Perf+ finds and drops them
    assert plain["pages_unchanged"] > 0 and plain["pages_forwarded"] == plain["pages_seen"]
    assert pp["pages_unchanged"] > 0
    assert pp["pages_forwarded"] == pp["pages_seen"] - pp["pages_unchanged"]
    assert pp["wire_bytes"] < plain["wire_bytes"]
    assert 0 < pp["filter_table_bytes"] < runs[("converge", "xbzrle-full")]["xbzrle_cache_bytes"]
    summary = data["summary"]
    assert summary["all_memory_intact"] is True
    assert summary["converge_wire_bytes_ratio"] < 1
    assert "perfplus bench migrate: link 64mibps" in res.stdout
