"""The convergence ladder: raise the downtime on stalls, then post-copy or abort."""

import pytest

from perfplus_agent.errors import UsageError
from perfplus_agent.migration.convergence import (
    POLICIES,
    ConvergenceController,
    ConvergencePolicy,
    Step,
    StopAndCopyAfter,
    policy_named,
)
from perfplus_agent.migration.jobstats import JobStats


def sample(iteration, remaining):
    return JobStats(memory_iteration=iteration, memory_remaining=remaining)


def feed(ctl, samples):
    """Every decision of one migration: the one before it starts, then one per sample."""
    decided = [ctl.before_start(), *(ctl.observe(s) for s in samples)]
    return [d for d in decided if d is not None]


def test_initial_downtime_is_set_before_the_migration_starts():
    ctl = ConvergenceController(POLICIES["default"])
    d = ctl.before_start()
    assert (d.step, d.downtime_ms) == (Step.SET_DOWNTIME, 300)
    assert ctl.observe(sample(1, 1000)) is None
    assert ctl.history == [d]


def test_converging_migration_is_left_alone():
    ctl = ConvergenceController(POLICIES["default"])
    decisions = feed(ctl, [sample(i, 1000 - 100 * i) for i in range(1, 9)])
    assert [d.step for d in decisions] == [Step.SET_DOWNTIME]


def test_stalls_climb_the_ladder_then_abort():
    policy = ConvergencePolicy("t", (100, 200), stall_iterations=2)
    ctl = ConvergenceController(policy)
    decisions = feed(ctl, [sample(i, 500) for i in range(1, 20)])
    assert [(d.step, d.downtime_ms) for d in decisions] == [
        (Step.SET_DOWNTIME, 100), (Step.SET_DOWNTIME, 200), (Step.ABORT, None)]
    assert "no convergence at 200 ms" in decisions[-1].reason


def test_postcopy_policy_switches_instead_of_aborting():
    ctl = ConvergenceController(POLICIES["postcopy"])
    decisions = feed(ctl, [sample(i, 500) for i in range(1, 30)])
    assert decisions[-1].step is Step.START_POSTCOPY
    assert sum(d.step is Step.START_POSTCOPY for d in decisions) == 1


def test_repeated_samples_of_one_iteration_count_once():
    ctl = ConvergenceController(ConvergencePolicy("t", (100, 200), stall_iterations=2))
    decisions = feed(ctl, [sample(1, 9), *[sample(3, 500)] * 10, sample(4, 400)])
    assert [d.step for d in decisions] == [Step.SET_DOWNTIME]


def test_migration_downtime_parameter_starts_the_ladder():
    policy = POLICIES["default"].with_initial_downtime(700)
    assert policy.downtime_steps_ms == (700, 1000, 2000)
    assert POLICIES["default"].with_initial_downtime(0) == POLICIES["default"]


def test_unknown_policy():
    with pytest.raises(UsageError, match="unknown migration policy 'fast'"):
        policy_named("fast")


def test_stop_and_copy_after_raises_the_limit_once_when_the_next_pass_starts():
    c = StopAndCopyAfter(4)
    assert c.before_start() is None
    assert [c.observe(sample(i, 100)) for i in (1, 2, 3, 4)] == [None] * 4
    d = c.observe(sample(5, 100))
    assert d is not None and d.step is Step.SET_DOWNTIME and d.downtime_ms == 600_000
    assert "after pass 4" in d.reason
    assert c.observe(sample(6, 100)) is None and c.history == [d]
