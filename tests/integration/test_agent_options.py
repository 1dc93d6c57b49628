"""Options of ocf:perfplus:VirtualDomain that change what start and stop do, through the real
path: snapshot, save_config_on_stop, shutdown_mode."""

import re

import pytest
from lxml import etree

from tests.integration.agent_support import domain_config, run_agent, start_booted, where

pytestmark = pytest.mark.integration
OK = 0


@pytest.mark.slow
def test_snapshot_saves_on_stop_and_restores_on_start(guests, tmp_path):
    snapdir = tmp_path / "snapshots"
    snapdir.mkdir()
    params = {**domain_config(guests, "snap", tmp_path), "snapshot": str(snapdir)}
    start_booted(guests, "h1", params, "snap")
    console = guests.console("snap")
    assert console.command("p", r"^PAUSED") == "PAUSED"
    checksum = console.command("c", r"^CKSUM")
    stop = run_agent(guests, "h1", "stop", params, timeout_s=60)
    assert stop.rc == OK, stop.stderr
    assert (snapdir / "snap.state").exists()
    assert where(guests, "snap") == []
    offset = guests.console("snap", guests.layout.host_named("h1")).size()
    start = run_agent(guests, "h1", "start", params, timeout_s=60)
    assert start.rc == OK, start.stderr
    assert "restoring snap" in start.stderr
    assert not (snapdir / "snap.state").exists()
    console = guests.console("snap")
    assert console.command("c", r"^CKSUM") == checksum, "the guest's memory came back"
    lines, _ = console.lines(offset)
    assert not any("PERFPLUS-GUEST BOOTED" in ln for ln in lines), "restored, not rebooted"


def test_save_config_on_stop_writes_the_running_definition_back(guests, tmp_path):
    params = {**domain_config(guests, "saved", tmp_path, workload=None),
              "save_config_on_stop": "true", "force_stop": "true"}
    config = tmp_path / "saved.xml"
    before = config.read_text()
    assert run_agent(guests, "h2", "start", params).rc == OK
    assert run_agent(guests, "h2", "stop", params).rc == OK
    after = config.read_text()
    assert after != before
    root = etree.fromstring(after.encode())
    assert root.findtext("name") == "saved"
    # libvirt's own additions (e.g. the machine type it resolved) show it came from libvirt
    assert re.match(r"pc-i440fx-", root.find("os/type").get("machine"))


def test_shutdown_mode_is_applied(guests, tmp_path):
    """With mode 'agent' and no guest agent, libvirt refuses the shutdown: that refusal (and
    the escalation to destroy) proves the mode reached libvirt, unlike upstream's agent."""
    params = {**domain_config(guests, "mode", tmp_path, workload=None),
              "shutdown_mode": "agent"}
    assert run_agent(guests, "h3", "start", params).rc == OK
    stop = run_agent(guests, "h3", "stop", params, timeout_s=30)
    assert stop.rc == OK, stop.stderr
    assert "graceful shutdown of mode refused" in stop.stderr
    assert "agent" in stop.stderr.lower()
    assert where(guests, "mode") == []
