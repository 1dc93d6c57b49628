"""The fault suite, run as a user runs it: faults hit live migrations under Pacemaker, and
none may leave the guest running twice, lost, or damaged. Also the detector it relies on."""

from __future__ import annotations

import json

import pytest

from perfplus_agent.lab.faults import FAULTS, RunningSampler
from perfplus_agent.lab.guest_xml import guest_xml
from perfplus_agent.libvirt_conn import open_connection
from tests.conftest import perfplus

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COUNT = 50  # the seven kinds in turn: each at least 7 times


def test_sampler_sees_a_guest_running_twice(guests):
    """The double-active detector on the real path: one guest started on two hosts."""
    spec = guests.create("twice", "h1", 128)
    sampler = RunningSampler(guests, "twice")
    assert sampler.running_now() == ("h1",)
    conn = open_connection(guests.layout.host_named("h2").local_uri)
    try:
        conn.createXML(guest_xml(spec), 0)
    finally:
        conn.close()
    assert sampler.running_now() == ("h1", "h2")


@pytest.mark.timeout(COUNT * 120)
def test_fault_suite_no_double_active_no_lost(tmp_path):
    count = COUNT
    out = tmp_path / "faults.json"
    res = perfplus("lab", "faults", "--count", str(count), "--name", "ptfaults", "--json",
                   str(out), timeout=count * 120)
    data = json.loads(out.read_text()) if out.exists() else {}
    failed = [o for o in data.get("samples", {}).get("outcomes", []) if not o["survived"]]
    assert res.returncode == 0, f"{res.stdout}\n{failed}\n{res.stderr[-4000:]}"
    summary = data["summary"]
    assert summary["injected"] == summary["survived"] == count
    assert summary["double_active"] == summary["lost"] == 0
    assert {o["fault"] for o in data["samples"]["outcomes"]} == set(FAULTS)
    assert f"{count} faults injected, {count} survived, 0 double-active, 0 lost" in res.stdout
    assert perfplus("lab", "status", "--name", "ptfaults").stdout.strip() == \
        "lab 'ptfaults': not up"
