"""How a live migration is pushed to converge, as data, and the pure logic that applies it.

A policy is a ladder: start with the first downtime limit; each time QEMU's pre-copy *stalls*
(an iteration ends with no less memory left to send than the best iteration so far, for
``stall_iterations`` iterations in a row) climb one step. Past the last step: switch to
post-copy when the policy allows it, otherwise abort, which leaves the guest running on the
source. Auto-converge (QEMU throttling the guest's vCPUs when *it* sees no convergence) is
enabled from the start when the policy says so; QEMU only throttles when needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from perfplus_agent.errors import UsageError
from perfplus_agent.migration.jobstats import JobStats

__all__ = [
    "POLICIES",
    "Controller",
    "ConvergenceController",
    "ConvergencePolicy",
    "Decision",
    "Step",
    "StopAndCopyAfter",
    "policy_named",
]


@dataclass(frozen=True)
class ConvergencePolicy:
    """A named ladder of downtime limits and what to do past its top."""

    name: str
    downtime_steps_ms: tuple[int, ...]
    stall_iterations: int = 2
    auto_converge: bool = True
    postcopy: bool = False
    description: str = ""

    def with_initial_downtime(self, ms: int) -> ConvergencePolicy:
        """The same ladder starting at ``ms`` (the agent's ``migration_downtime``)."""
        if ms <= 0:
            return self
        higher = tuple(s for s in self.downtime_steps_ms if s > ms)
        return ConvergencePolicy(self.name, (ms, *higher), self.stall_iterations,
                                 self.auto_converge, self.postcopy, self.description)


POLICIES: dict[str, ConvergencePolicy] = {
    p.name: p
    for p in (
        ConvergencePolicy("default", (300, 500, 1000, 2000),
                          description="QEMU's 300 ms, doubled on stalls up to 2 s, then abort"),
        ConvergencePolicy("minimal-downtime", (100, 150, 200, 300, 400, 500),
                          description="small steps up to 500 ms, then abort"),
        ConvergencePolicy("postcopy", (300, 500), postcopy=True,
                          description="two steps, then switch to post-copy"),
        ConvergencePolicy("strict", (300,), auto_converge=False,
                          description="QEMU's default only; abort on the first stall"),
    )
}


def policy_named(name: str) -> ConvergencePolicy:
    try:
        return POLICIES[name]
    except KeyError:
        known = ", ".join(sorted(POLICIES))
        raise UsageError(f"unknown migration policy {name!r} (known: {known})") from None


class Step(Enum):
    SET_DOWNTIME = "set-downtime"
    START_POSTCOPY = "start-postcopy"
    ABORT = "abort"


@dataclass(frozen=True)
class Decision:
    step: Step
    downtime_ms: int | None = None
    reason: str = ""


@dataclass
class ConvergenceController:
    """Feed it job samples; it answers with what to do now (None: nothing)."""

    policy: ConvergencePolicy
    _level: int = 0  # index of the downtime limit in force
    _best_remaining: int | None = None
    _last_iteration: int = -1
    _stalls: int = 0
    _finished: bool = False  # aborted, or switched to post-copy: nothing more to decide
    history: list[Decision] = field(default_factory=list)

    def _decide(self, decision: Decision) -> Decision:
        self.history.append(decision)
        return decision

    def before_start(self) -> Decision:
        """The initial downtime limit, set before the migration starts: libvirt lets a
        running migration's limit change only once QEMU transfers, and a call made earlier
        waits for the whole migration (or libvirt's 30 s job timeout)."""
        return self._decide(Decision(Step.SET_DOWNTIME, self.policy.downtime_steps_ms[0],
                                     "initial downtime limit"))

    def observe(self, sample: JobStats) -> Decision | None:
        if sample.memory_iteration <= self._last_iteration or self._finished:
            return None
        self._last_iteration = sample.memory_iteration
        if sample.memory_iteration < 2:
            return None  # the first pass sends everything: nothing to judge yet
        remaining = sample.memory_remaining
        if self._best_remaining is None or remaining < self._best_remaining:
            self._best_remaining = remaining
            self._stalls = 0
            return None
        self._stalls += 1
        if self._stalls < self.policy.stall_iterations:
            return None
        self._stalls = 0
        self._best_remaining = None
        if self._level + 1 < len(self.policy.downtime_steps_ms):
            self._level += 1
            ms = self.policy.downtime_steps_ms[self._level]
            return self._decide(Decision(Step.SET_DOWNTIME, ms,
                                         f"stalled at iteration {sample.memory_iteration}"))
        self._finished = True
        if self.policy.postcopy:
            return self._decide(Decision(Step.START_POSTCOPY,
                                         reason="still stalled at the highest downtime"))
        return self._decide(Decision(Step.ABORT, reason=(
            f"no convergence at {self.policy.downtime_steps_ms[-1]} ms downtime after "
            f"{sample.memory_iteration} iterations")))


@dataclass
class StopAndCopyAfter:
    """The published method's ending, for comparisons: after ``passes`` pre-copy passes,
    whatever is still dirty goes in one stop-and-copy (the downtime limit is raised out of
    the way when pass ``passes + 1`` starts)."""

    passes: int
    downtime_ms: int = 600_000
    history: list[Decision] = field(default_factory=list)

    def before_start(self) -> None:
        """Nothing to set before the migration: QEMU's own limit applies until the end."""
        return None

    def observe(self, sample: JobStats) -> Decision | None:
        if self.history or sample.memory_iteration <= self.passes:
            return None
        decision = Decision(Step.SET_DOWNTIME, self.downtime_ms,
                            f"stop-and-copy after pass {self.passes}")
        self.history.append(decision)
        return decision


# What a live migration consults on every job sample.
Controller = ConvergenceController | StopAndCopyAfter
