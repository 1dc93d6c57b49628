"""ocf:perfplus:VirtualDomain with perfplus=true: live migrations through the lab hosts'
Perf+ daemons (filter on, stream encrypted between hosts), and the faults that must leave
the guest running on exactly one host with a clear error."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import pytest

from perfplus_agent.daemon.keys import load_key
from perfplus_agent.lab.faults import RunningSampler
from perfplus_agent.lab.host_procs import daemon_pid
from perfplus_agent.lab.hostinit import DAEMON_PORT
from perfplus_agent.lab.network import set_link_state
from perfplus_agent.lab.service_probe import ServiceProbe
from tests.integration.agent_support import (
    domain_config,
    qemu_pid,
    run_agent,
    start_booted,
    where,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
OK, GENERIC, INSTALLED = 0, 1, 5


@pytest.fixture
def pvm(guests, tmp_path):
    """Agent parameters for a lab guest 'pvm' migrated through the Perf+ daemons."""
    params = domain_config(guests, "pvm", tmp_path, workload="-m 64 -r 2000 -s 0.6 -z 0.1 -i 0.2")
    return {**params, "perfplus": "true", "perfplus_key_file": str(guests.layout.cluster_key)}


def perfplus_daemon_pid(guests, host: str) -> int | None:
    return daemon_pid(guests.layout.host_named(host))


def restart_perfplus_daemon(guests, host: str, timeout_s: float = 30.0) -> None:
    """Have the host's init start its missing services again; wait for the daemon."""
    os.kill(guests.lab.init_pid(guests.layout.host_named(host)), signal.SIGUSR1)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        res = guests.lab.run_in(host, [sys.executable, "-m", "perfplus_agent.cli", "daemon",
                                       "ping", f"127.0.0.1:{DAEMON_PORT}",
                                       "--key-file", str(guests.layout.cluster_key)],
                                timeout=10, check=False)
        if res.returncode == 0:
            return
        time.sleep(0.5)
    raise AssertionError(f"the Perf+ daemon of {host} did not come back")


def test_start_elsewhere_and_migrate_to_go_through_the_daemons(guests, pvm):
    start_booted(guests, "h1", pvm, "pvm")
    with ServiceProbe(guests.layout, guests.spec("pvm").ip) as probe:
        res = run_agent(guests, "h2", "start", pvm)
        service = probe.stop()
    assert res.rc == OK, res.stderr
    assert "live-migrating it here instead of starting a copy" in res.stderr
    assert "Perf+ filter" in res.stderr and "pages unchanged and not resent" in res.stderr
    assert where(guests, "pvm") == ["h2"]
    assert service.connection_kept, service
    assert guests.console("pvm").command("v", r"^VERIFY") == "VERIFY OK 16384"
    res = run_agent(guests, "h2", "migrate_to", pvm, {"migrate_target": "h3"})
    assert res.rc == OK, res.stderr
    assert run_agent(guests, "h3", "migrate_from", pvm, {"migrate_source": "h2"}).rc == OK
    assert where(guests, "pvm") == ["h3"]
    assert guests.console("pvm").command("v", r"^VERIFY") == "VERIFY OK 16384"


def only_on(guests, name: str, host: str, timeout_s: float = 30.0) -> None:
    """``name`` runs on ``host`` only. An incoming copy left paused on the destination by the
    failed migration may take libvirt a moment to remove; it must never run meanwhile."""
    sampler = RunningSampler(guests, name)
    deadline = time.monotonic() + timeout_s
    while True:
        assert sampler.running_now() == (host,), "the guest must run on its source only"
        if where(guests, name) == [host]:
            return
        assert time.monotonic() < deadline, f"{name} left on {where(guests, name)}"
        time.sleep(0.5)


def _during_migration(guests, action, delay_s: float = 1.0
                      ) -> tuple[list[int], threading.Thread]:
    """Run ``action`` once the destination QEMU of 'pvm' on h2 exists (plus ``delay_s``)."""
    fired: list[int] = []

    def watch() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pid = qemu_pid(guests, "h2", "pvm")
            if pid:
                time.sleep(delay_s)
                fired.append(action(pid))
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch)
    thread.start()
    return fired, thread


def _migrate_with_fault(guests, pvm, fault, timeout_s: float = 60.0):
    """migrate_to h1 -> h2 with ``fault`` injected once; no retry (migration_retries=0), so
    the failure itself shows: the guest stays on h1."""
    params = {**pvm, "migration_speed": "8",  # MiB/s: the migration takes several seconds
              "migration_retries": "0"}
    start_booted(guests, "h1", params, "pvm")
    fired, watcher = _during_migration(guests, fault)
    res = run_agent(guests, "h1", "migrate_to", params, {"migrate_target": "h2"},
                    timeout_s=timeout_s)
    watcher.join(40)
    assert fired, "the fault was never injected: no destination QEMU appeared"
    assert res.rc == GENERIC, res.stderr
    assert res.exit_reason and "pvm" in res.exit_reason
    assert res.seconds < timeout_s
    only_on(guests, "pvm", "h1")
    assert guests.console("pvm").command("v", r"^VERIFY") == "VERIFY OK 16384"
    return res


def test_destination_qemu_killed(guests, pvm):
    _migrate_with_fault(guests, pvm, lambda pid: os.kill(pid, signal.SIGKILL) or pid)


def test_destination_qemu_killed_then_tried_again_through_the_daemons(guests, pvm):
    params = {**pvm, "migration_speed": "8"}  # default migration_retries: 1
    start_booted(guests, "h1", params, "pvm")
    fired, watcher = _during_migration(guests, lambda pid: os.kill(pid, signal.SIGKILL) or pid)
    with RunningSampler(guests, "pvm") as sampler:  # the daemon keeps 30 s for its answer
        res = run_agent(guests, "h1", "migrate_to", params, {"migrate_target": "h2"},
                        timeout_s=90)
    watcher.join(40)
    assert fired, "the fault was never injected: no destination QEMU appeared"
    assert res.rc == 0, res.stderr
    assert "trying again" in res.stderr and "Perf+" in res.stderr
    assert sampler.max_running == 1, sampler.seen_on
    assert where(guests, "pvm") == ["h2"]
    assert guests.console("pvm").command("v", r"^VERIFY") == "VERIFY OK 16384"


@pytest.mark.parametrize("side", ["h1", "h2"], ids=["source-daemon", "destination-daemon"])
def test_daemon_killed(guests, pvm, side):
    def kill_daemon(_qemu: int) -> int:
        pid = perfplus_daemon_pid(guests, side)
        assert pid, f"no Perf+ daemon on {side}"
        os.kill(pid, signal.SIGKILL)
        return pid

    try:
        res = _migrate_with_fault(guests, pvm, kill_daemon)
        assert "Perf+ daemon" in res.exit_reason
    finally:
        restart_perfplus_daemon(guests, side)


def test_migration_link_cut(guests, pvm):
    h2 = guests.layout.host_named("h2")

    def cut(_qemu: int) -> int:
        set_link_state(h2, up=False)
        return 0

    try:
        _migrate_with_fault(guests, pvm, cut, timeout_s=60.0)
    finally:
        set_link_state(h2, up=True)


def test_request_without_the_key_and_garbage_get_nothing(guests):
    """From inside h1: a wrong key and raw garbage are refused; the daemon keeps serving."""
    key = load_key(guests.layout.cluster_key)
    script = (
        "import socket, sys\n"
        "from perfplus_agent.daemon.client import DaemonError, request\n"
        f"addr = ('10.77.1.2', {DAEMON_PORT})\n"
        "try:\n"
        "    request(addr, b'x' * 32, {'op': 'ping'}, timeout=8)\n"
        "    print('WRONG-KEY-ANSWERED')\n"
        "except DaemonError as exc:\n"
        "    print('refused:', exc)\n"
        "s = socket.create_connection(addr, timeout=5)\n"
        "s.sendall(bytes(range(256)) * 64)\n"
        "s.settimeout(10)\n"
        "try:\n"
        "    data = s.recv(65536)\n"
        "    print('garbage got', len(data))\n"
        "except OSError as exc:\n"
        "    print('garbage closed', exc)\n"
        f"print(request(addr, bytes.fromhex('{key.hex()}'), {{'op': 'ping'}}, timeout=8))\n"
    )
    res = guests.lab.run_in("h1", [sys.executable, "-c", script], timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    assert "WRONG-KEY-ANSWERED" not in res.stdout
    assert "refused:" in res.stdout
    assert "'ok': True" in res.stdout and "'node': 'h2'" in res.stdout


def test_missing_key_is_not_installed_here(guests, pvm, tmp_path):
    res = run_agent(guests, "h1", "validate-all",
                    {**pvm, "perfplus_key_file": str(tmp_path / "absent.key")})
    assert res.rc == INSTALLED
    assert res.exit_reason and "Perf+ cluster key" in res.exit_reason
