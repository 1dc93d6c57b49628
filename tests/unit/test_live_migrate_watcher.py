"""The watcher of a live migration keeps its deadline whatever libvirt does (fake domains;
the real path is in tests/integration/test_agent_lab.py)."""

import threading
import time

import libvirt
import pytest

from perfplus_agent.migration.convergence import POLICIES, ConvergenceController
from perfplus_agent.migration.live import MigrationError, MigrationRequest, live_migrate


class FakeDomain:  # libvirt.virDomain's method names
    """A domain whose migration runs until aborted; ``stuck`` names calls that never return
    while the migration runs (libvirt waiting for its job lock)."""

    def __init__(self, stuck: tuple[str, ...] = ()) -> None:
        self.stuck = stuck
        self.calls: list[str] = []
        self.migrating = threading.Event()
        self.aborted = threading.Event()

    def name(self) -> str:
        return "fake"

    def _maybe_stuck(self, what: str) -> None:
        self.calls.append(what)
        if what in self.stuck and self.migrating.is_set():
            time.sleep(20)  # far past any deadline of these tests

    def migrateToURI3(self, uri, params, flags):
        self.calls.append("migrate")
        self.migrating.set()
        if not self.aborted.wait(30):
            raise AssertionError("never aborted")
        raise libvirt.libvirtError("operation aborted: migration out job: canceled by client")

    def migrateSetMaxDowntime(self, ms, flags):
        self._maybe_stuck(f"downtime {ms}")

    def jobStats(self):
        self._maybe_stuck("stats")
        return {"type": libvirt.VIR_DOMAIN_JOB_UNBOUNDED, "memory_iteration": 1}

    def abortJob(self):
        self.calls.append("abort")
        self.aborted.set()


def test_initial_downtime_is_set_before_the_migration_starts():
    dom = FakeDomain(stuck=("downtime 300",))
    req = MigrationRequest(dest_uri="qemu+tcp://nowhere/system", timeout_s=1.0, call_s=0.5,
                           abort_wait_s=2.0, poll_s=0.05)
    with pytest.raises(MigrationError, match="did not finish within 1 s and was aborted"):
        live_migrate(dom, req, controller=ConvergenceController(POLICIES["default"]))
    assert dom.calls[:2] == ["downtime 300", "migrate"]


@pytest.mark.parametrize("stuck", [("stats",), ("stats", "downtime 300")])
def test_a_watcher_call_that_never_returns_does_not_hold_up_the_deadline(stuck):
    dom = FakeDomain(stuck=stuck)
    req = MigrationRequest(dest_uri="qemu+tcp://nowhere/system", timeout_s=1.5, call_s=0.5,
                           abort_wait_s=2.0, poll_s=0.05)
    t0 = time.monotonic()
    with pytest.raises(MigrationError, match="and was aborted; the guest stays on the source"):
        live_migrate(dom, req, controller=ConvergenceController(POLICIES["strict"]))
    assert time.monotonic() - t0 < 1.5 + 1.0 + 0.5
    assert "abort" in dom.calls
