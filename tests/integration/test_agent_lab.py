"""ocf:perfplus:VirtualDomain against real libvirt in the lab. Each test asserts exactly which
host runs the domain afterwards."""

import os
import signal
import threading
import time

import pytest

from perfplus_agent.lab.faults import RunningSampler
from perfplus_agent.lab.network import set_link_state
from perfplus_agent.lab.service_probe import ServiceProbe
from tests.integration.agent_support import (
    daemon_pid,
    domain_config,
    freeze,
    qemu_pid,
    restart_libvirtd,
    run_agent,
    start_booted,
    thaw,
    where,
)

pytestmark = pytest.mark.integration
OK, GENERIC, NOT_RUNNING = 0, 1, 7


@pytest.fixture
def vm(guests, tmp_path):
    """Agent parameters for a lab guest named 'avm' (not started)."""
    return domain_config(guests, "avm", tmp_path)


def test_start_cold_when_it_runs_nowhere(guests, vm):
    assert run_agent(guests, "h1", "monitor", vm, {"interval": "0"}).rc == NOT_RUNNING
    start_booted(guests, "h1", vm, "avm")
    assert where(guests, "avm") == ["h1"]
    assert run_agent(guests, "h1", "monitor", vm, {"interval": "10000"}).rc == OK
    assert run_agent(guests, "h2", "monitor", vm, {"interval": "0"}).rc == NOT_RUNNING
    again = run_agent(guests, "h1", "start", vm)
    assert again.rc == OK and where(guests, "avm") == ["h1"]


@pytest.mark.slow
def test_start_on_h2_of_a_domain_running_on_h1_migrates_it_live(guests, vm):
    start_booted(guests, "h1", vm, "avm")
    with ServiceProbe(guests.layout, guests.spec("avm").ip) as probe:
        res = run_agent(guests, "h2", "start", vm)
        service = probe.stop()
    assert res.rc == OK, res.stderr
    assert "live-migrating it here instead of starting a copy" in res.stderr
    assert where(guests, "avm") == ["h2"]
    assert service.connection_kept, service
    assert service.tcp_max_gap_ms < 3000
    assert guests.console("avm").command("v", r"^VERIFY") == "VERIFY OK 16384"


def test_start_refuses_when_a_peer_cannot_be_asked(guests, vm):
    h3 = guests.layout.host_named("h3")
    set_link_state(h3, up=False)
    try:
        res = run_agent(guests, "h1", "start", vm, timeout_s=20)
    finally:
        set_link_state(h3, up=True)
    assert res.rc == GENERIC
    assert res.exit_reason and "cannot ask h3 whether it runs avm" in res.exit_reason
    assert "refusing to start a second copy" in res.exit_reason
    assert where(guests, "avm") == []
    assert res.seconds < 20


def _migrate_to_h2_beside(guests, params, fault, timeout_s: float):
    """migrate_to of 'avm' from h1 to h2 with ``fault`` running in a thread beside it (it
    waits for its moment itself), the running copies sampled throughout."""
    thread = threading.Thread(target=fault)
    thread.start()
    with RunningSampler(guests, "avm") as sampler:
        res = run_agent(guests, "h1", "migrate_to", params, {"migrate_target": "h2"},
                        timeout_s=timeout_s)
    thread.join(60)
    return res, sampler


@pytest.mark.slow
@pytest.mark.parametrize(("retries", "kills", "lands_on"), [
    ("0", 1, "h1"),  # no retry: the failed migration leaves the guest on its source
    ("1", 1, "h2"),  # tried again: a new incoming QEMU takes it, a live move after all
    ("1", 2, "h1"),  # the second try fails too: still on the source, one copy throughout
], ids=["no-retry", "retried", "retry-fails"])
def test_migrate_to_when_the_destination_qemu_dies(guests, vm, retries, kills, lands_on):
    params = {**vm, "migration_speed": "8", "migration_retries": retries}  # several seconds
    start_booted(guests, "h1", params, "avm")
    killed: list[int] = []

    def kill_destination_qemus():
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and len(killed) < kills:
            pid = qemu_pid(guests, "h2", "avm")
            if pid and pid not in killed:
                time.sleep(1.0)  # well into the transfer
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.05)

    res, sampler = _migrate_to_h2_beside(guests, params, kill_destination_qemus, timeout_s=60)
    assert len(killed) == kills, "the destination QEMU did not appear as often as expected"
    assert sampler.max_running == 1, sampler.seen_on
    assert ("trying again" in res.stderr) is (retries == "1"), res.stderr
    if lands_on == "h2":
        assert res.rc == OK, res.stderr
    else:
        assert res.rc == GENERIC, res.stderr
        assert res.exit_reason and "avm" in res.exit_reason
    assert where(guests, "avm") == [lands_on]
    assert guests.console("avm").command("v", r"^VERIFY") == "VERIFY OK 16384"


@pytest.mark.slow
def test_migrate_to_tries_again_once_the_destination_libvirtd_is_back(guests, vm):
    """libvirtd of the destination killed mid-migration and started again 2 s later (as
    systemd would): its incoming QEMU is gone with the job, so one more try moves the guest."""
    params = {**vm, "migration_speed": "8"}  # MiB/s: the migration takes several seconds
    start_booted(guests, "h1", params, "avm")
    killed: list[int] = []

    def kill_and_restart_libvirtd():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not qemu_pid(guests, "h2", "avm"):
            time.sleep(0.05)
        time.sleep(1.0)  # well into the transfer
        pid = daemon_pid(guests, "h2", "libvirtd")
        if pid:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            time.sleep(2.0)
            restart_libvirtd(guests, "h2")

    res, sampler = _migrate_to_h2_beside(guests, params, kill_and_restart_libvirtd,
                                         timeout_s=90)
    assert killed, "libvirtd of the destination was never killed"
    assert res.rc == OK, res.stderr
    assert "trying again" in res.stderr
    assert sampler.max_running == 1, sampler.seen_on
    assert where(guests, "avm") == ["h2"]
    assert guests.console("avm").command("v", r"^VERIFY") == "VERIFY OK 16384"


@pytest.mark.slow
def test_migration_that_cannot_converge_is_aborted_before_the_timeout(guests, tmp_path):
    params = domain_config(guests, "busy", tmp_path, workload="-m 96 -r 0 -s 0 -i 1")
    params.update({"migration_speed": "2", "migration_policy": "strict"})
    start_booted(guests, "h1", params, "busy")
    res = run_agent(guests, "h1", "migrate_to", params, {"migrate_target": "h3"}, timeout_s=25)
    assert res.rc == GENERIC
    assert res.seconds < 25, "aborted before Pacemaker's timeout"
    assert res.exit_reason and "aborted" in res.exit_reason
    assert where(guests, "busy") == ["h1"]


def test_stop_of_a_guest_that_ignores_shutdown_escalates_in_time(guests, tmp_path):
    vm = domain_config(guests, "avm", tmp_path, power_button=False)
    start_booted(guests, "h2", vm, "avm")
    res = run_agent(guests, "h2", "stop", {**vm, "stop_escalation_margin": "5"}, timeout_s=12)
    assert res.rc == OK, res.stderr
    assert res.seconds < 12
    assert "destroying avm" in res.stderr
    assert where(guests, "avm") == []
    assert run_agent(guests, "h2", "stop", vm).rc == OK  # idempotent


def test_stop_shuts_a_cooperating_guest_down_gracefully(guests, vm):
    start_booted(guests, "h1", vm, "avm")
    res = run_agent(guests, "h1", "stop", vm, timeout_s=30)
    assert res.rc == OK, res.stderr
    assert res.seconds < 10
    assert "destroying" not in res.stderr
    assert "reboot: Power down" in guests.console("avm", guests.layout.host(1)).log.read_text()
    assert where(guests, "avm") == []


def test_monitor_with_a_hung_libvirtd_answers_in_time(guests, vm):
    assert run_agent(guests, "h3", "start", vm).rc == OK
    libvirtd = daemon_pid(guests, "h3", "libvirtd")
    assert libvirtd
    freeze(libvirtd)
    try:
        res = run_agent(guests, "h3", "monitor", vm, {"interval": "10000"}, timeout_s=10)
    finally:
        thaw(libvirtd)
    assert res.rc == OK
    assert res.seconds < 10
    assert "reporting it running" in res.stderr


def test_monitor_and_stop_with_libvirtd_stopped(guests, vm):
    assert run_agent(guests, "h3", "start", vm).rc == OK
    libvirtd = daemon_pid(guests, "h3", "libvirtd")
    assert libvirtd
    os.kill(libvirtd, signal.SIGKILL)
    try:
        mon = run_agent(guests, "h3", "monitor", vm, {"interval": "10000"}, timeout_s=10)
        assert mon.rc == OK and mon.seconds < 5, mon.stderr
        assert qemu_pid(guests, "h3", "avm")
        stop = run_agent(guests, "h3", "stop", vm, timeout_s=20)
        assert stop.rc == OK, stop.stderr
        assert "stopping the QEMU process of avm directly" in stop.stderr
        assert qemu_pid(guests, "h3", "avm") is None
        probe = run_agent(guests, "h3", "monitor", vm, {"interval": "0"}, timeout_s=10)
        assert probe.rc == NOT_RUNNING
    finally:
        restart_libvirtd(guests, "h3")
    assert where(guests, "avm") == []


def test_stop_right_after_start_still_shuts_down_gracefully(guests, vm):
    """The first ACPI request reaches a guest that is still booting and is lost: the agent
    repeats it instead of waiting for the escalation."""
    assert run_agent(guests, "h2", "start", vm).rc == OK
    res = run_agent(guests, "h2", "stop", vm, timeout_s=60)
    assert res.rc == OK, res.stderr
    assert "destroying" not in res.stderr
    assert res.seconds < 20
    assert where(guests, "avm") == []
