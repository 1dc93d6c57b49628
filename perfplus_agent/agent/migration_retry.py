"""Whether a failed live migration may be tried once more within the same action.

A migration that failed because its destination QEMU died (killed, out of memory, a crash
while loading) leaves the guest running on its source and nothing on the destination. Pacemaker
answers a failed ``migrate_to`` with a stop everywhere and a cold start; trying once more starts
a new incoming QEMU and makes it a live move instead. It is tried only when no second copy can
come of it: the source still runs the guest (not paused), the destination's libvirt answers and
has no active domain of that name (a QEMU left over there from the first try would be listed as
such, and libvirt never resumes an incoming QEMU whose stream did not complete), the migration
was not ended on purpose (an abort at its deadline or by the convergence policy would end the
same way again) and enough of the action's time is left.
"""

from __future__ import annotations

from perfplus_agent.adapters.hypervisor import DomainState, StateReport
from perfplus_agent.migration.live import MigrationError

__all__ = ["RETRY_MIN_S", "reason_in_states", "reason_not_to_retry"]

RETRY_MIN_S = 5.0  # a second try needs at least this much of the action's work time


def reason_not_to_retry(error: MigrationError, remaining_s: float,
                        retries_left: int) -> str | None:
    """Why the failed migration is not tried again whatever the nodes say, or None."""
    if retries_left <= 0:
        return "no retries left (migration_retries)"
    if error.aborted:
        return "the migration was aborted, not failed: a second try would end the same way"
    if remaining_s < RETRY_MIN_S:
        return f"only {max(0.0, remaining_s):.0f} s of the action's time left"
    return None


def reason_in_states(source: StateReport | None, dest: StateReport | None) -> str | None:
    """Why the domain's state on the source and the destination after the failed try (None:
    that libvirt did not answer) forbids another one, or None when it is safe."""
    if source is None:
        return "the source's libvirt does not answer"
    if source.state is not DomainState.RUNNING or source.detail != "running":
        return f"the guest is {source.detail} on the source, not running"
    if dest is None:
        return "the destination's libvirt does not answer"
    if dest.state is not DomainState.ABSENT:
        return f"the destination still has the domain ({dest.detail})"
    return None
