"""When a failed live migration is tried again (pure decisions; the real path is in
tests/integration/test_agent_lab.py)."""

import pytest

from perfplus_agent.adapters.hypervisor import DomainState, StateReport
from perfplus_agent.agent.migration_retry import reason_in_states, reason_not_to_retry
from perfplus_agent.migration.live import MigrationError

FAILED = MigrationError("migration of vm failed: operation failed: job 'migration out' failed")
RUNNING = StateReport(DomainState.RUNNING, "running")
NOTHING = StateReport(DomainState.ABSENT, "not defined")


def test_a_failure_with_time_left_may_be_retried():
    assert reason_not_to_retry(FAILED, remaining_s=30, retries_left=1) is None
    assert reason_in_states(RUNNING, NOTHING) is None
    assert reason_in_states(RUNNING, StateReport(DomainState.ABSENT, "shut off")) is None


@pytest.mark.parametrize(("error", "remaining", "left", "needle"), [
    (FAILED, 30, 0, "no retries left"),
    (MigrationError("did not converge", aborted=True), 30, 1, "aborted, not failed"),
    (FAILED, 4.9, 1, "only 5 s of the action's time left"),
    (FAILED, -3, 1, "only 0 s"),
])
def test_no_retry_without_tries_time_or_after_an_abort(error, remaining, left, needle):
    assert needle in reason_not_to_retry(error, remaining_s=remaining, retries_left=left)


@pytest.mark.parametrize(("source", "dest", "needle"), [
    (None, NOTHING, "source's libvirt does not answer"),
    (StateReport(DomainState.RUNNING, "paused"), NOTHING, "paused on the source"),
    (StateReport(DomainState.FAILED, "crashed"), NOTHING, "crashed on the source"),
    (NOTHING, NOTHING, "not defined on the source"),
    (RUNNING, None, "destination's libvirt does not answer"),
    (RUNNING, StateReport(DomainState.RUNNING, "paused"), "destination still has the domain"),
    (RUNNING, RUNNING, "destination still has the domain (running)"),
    (RUNNING, StateReport(DomainState.FAILED, "crashed"), "destination still has the domain"),
])
def test_no_retry_unless_only_the_source_runs_it(source, dest, needle):
    assert needle in reason_in_states(source, dest)
