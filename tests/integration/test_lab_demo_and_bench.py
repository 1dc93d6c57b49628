"""The two user-facing long commands, run as a user runs them."""

import json

import pytest

from tests.conftest import perfplus

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_demo_evacuates_eight_guests_live_under_pacemaker():
    res = perfplus("lab", "demo", "--vms", "8", timeout=900)
    assert res.returncode == 0, res.stderr
    rows = [ln for ln in res.stdout.splitlines() if ln.startswith("vm")]
    assert len(rows) == 8, res.stdout
    for row in rows:
        assert row.split()[1] in ("h2", "h3"), row
        assert row.rstrip().endswith("yes      no  intact"), row
    assert "8 guests evacuated in" in res.stdout
    assert "8/8 connections kept" in res.stdout
    assert perfplus("lab", "status", "--name", "demo").stdout.strip() == "lab 'demo': not up"


def test_bench_lab_writes_its_figures(tmp_path):
    out = tmp_path / "lab.json"
    res = perfplus("bench", "lab", "--rounds", "1", "--json", str(out))
    assert res.returncode == 0, res.stderr
    data = json.loads(out.read_text())
    assert data["benchmark"] == "lab"
    assert {"qemu", "libvirt", "cpus", "kernel"} <= set(data["environment"])
    summary = data["summary"]
    for key in ("lab_up_s", "boot_s", "migrate_idle_s"):
        assert summary[key]["runs"] >= 1
        assert 0 < summary[key]["median"] < 60
    assert len(data["samples"]["migrate_idle_s"]) == 2


def test_bench_agent_measures_each_action(tmp_path):
    out = tmp_path / "agent.json"
    res = perfplus("bench", "agent", "--rounds", "3", "--json", str(out))
    assert res.returncode == 0, res.stderr
    summary = json.loads(out.read_text())["summary"]
    for action in ("meta-data", "monitor", "monitor (probe)"):
        row = summary[f"{action} overhead ms"]
        assert row["runs"] == 3
        assert 0 < row["min"] <= row["median"] <= row["max"] < 5000


@pytest.mark.parametrize("method", ["pcs node standby h1", "crm resource move",
                                    "pcs resource move", "cluster stack stop on h1"])
def test_every_evacuation_method_moves_guests_live(method):
    res = perfplus("lab", "demo", "--vms", "2", "--method", method, timeout=600)
    assert res.returncode == 0, res.stderr
    rows = [ln for ln in res.stdout.splitlines() if ln.startswith("vm")]
    assert len(rows) == 2, res.stdout
    for row in rows:
        assert row.split()[1] in ("h2", "h3") and row.rstrip().endswith("yes      no  intact")
    assert f"{method}: 2 guests evacuated in" in res.stdout
    assert "2/2 connections kept" in res.stdout
