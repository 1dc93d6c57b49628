"""Drive one libvirt live migration: start it, watch its job statistics, bound it in time.

The migration itself runs in a worker thread (libvirt's call blocks until the end); the
caller's thread samples the job every ``poll_s`` for progress and aborts the job when the
deadline passes, so that a migration that cannot finish leaves the guest running on the
source instead of outliving the caller's own timeout. Every call the watcher makes is bounded
too: a libvirt call that waits on the migration's job lock must not hold up the deadline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import libvirt

from perfplus_agent.bounded import CallTimeout, call_with_timeout
from perfplus_agent.errors import PerfplusError
from perfplus_agent.migration.convergence import Controller, Decision, Step
from perfplus_agent.migration.jobstats import JobStats

__all__ = ["MigrationError", "MigrationRequest", "MigrationResult", "live_migrate"]

log = logging.getLogger(__name__)

DEFAULT_FLAGS = libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER
# Reading completed-job statistics without KEEP_COMPLETED discards them: keep them for others.
COMPLETED_KEPT = (libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED
                  | libvirt.VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED)


class MigrationError(PerfplusError):
    """The migration failed or was aborted; the guest stays on the source. ``aborted``: it
    was ended on purpose (its deadline, or the convergence policy), not by a failure."""

    def __init__(self, message: str, *, aborted: bool = False) -> None:
        super().__init__(message)
        self.aborted = aborted


@dataclass(frozen=True)
class MigrationRequest:
    """What to migrate where. ``dest_uri`` is the destination libvirt as the *source daemon*
    reaches it (peer to peer); ``migrate_uri`` is where QEMU's data stream goes."""

    dest_uri: str
    migrate_uri: str | None = None
    bandwidth_mib: int = 0  # 0: unlimited
    timeout_s: float = 300.0
    abort_wait_s: float = 30.0  # after an abort, how long libvirt may take to return
    call_s: float = 10.0  # the most any one call of the watcher (statistics, abort) may take
    flags: int = DEFAULT_FLAGS
    extra_params: dict[str, object] | None = None  # more VIR_MIGRATE_PARAM_* entries
    poll_s: float = 0.2


@dataclass(frozen=True)
class MigrationResult:
    """Final job statistics (from the destination when it was given) and the wall time."""

    stats: JobStats
    wall_s: float
    samples: int
    decisions: tuple[Decision, ...] = ()


Progress = Callable[[JobStats], None]
MIN_CALL_S = 1.0  # a watcher's call gets at least this long, even at the deadline


def live_migrate(
    dom: libvirt.virDomain,
    req: MigrationRequest,
    dest_conn: libvirt.virConnect | None = None,
    on_progress: Progress | None = None,
    controller: Controller | None = None,
) -> MigrationResult:
    """Migrate ``dom`` live; MigrationError (guest still on the source) on any failure.

    ``controller`` sees every job sample and may raise the downtime limit, switch to
    post-copy or abort (see convergence.py); without one QEMU's defaults apply.
    """
    params: dict[str, object] = {}
    if req.migrate_uri:
        params[libvirt.VIR_MIGRATE_PARAM_URI] = req.migrate_uri
    params.update(req.extra_params or {})
    if req.bandwidth_mib:
        params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = req.bandwidth_mib
    name = dom.name()
    outcome: dict[str, BaseException | None] = {"error": None}

    def worker() -> None:
        try:
            dom.migrateToURI3(req.dest_uri, params, req.flags)
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    t0 = time.monotonic()
    deadline = t0 + req.timeout_s

    def bounded(call: Callable[[], object], what: str) -> object:
        """``call()`` within ``req.call_s`` and never far past the deadline (CallTimeout)."""
        limit = min(req.call_s, max(MIN_CALL_S, deadline - time.monotonic()))
        return call_with_timeout(call, limit, f"libvirt's {what} for {name}")

    first = controller.before_start() if controller else None
    if first is not None:
        _apply(first, bounded, dom)
    thread = threading.Thread(target=worker, name=f"migrate/{name}", daemon=True)
    thread.start()
    last = JobStats()
    samples = 0
    aborted: str | None = None
    while thread.is_alive():
        thread.join(req.poll_s)
        if not thread.is_alive():
            break
        if time.monotonic() > deadline and not aborted:
            aborted = (f"did not finish within {req.timeout_s:.0f} s")
            _attempt(bounded, dom.abortJob, "abort")
        if aborted:
            break
        try:
            raw = bounded(dom.jobStats, "job statistics")
        except (libvirt.libvirtError, CallTimeout):
            continue  # the job may just have ended, or libvirt is busy: the deadline holds
        raw = cast(dict, raw)
        if raw.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
            continue
        last = JobStats.from_libvirt(raw)
        samples += 1
        if on_progress:
            on_progress(last)
        decision = controller.observe(last) if controller else None
        if decision is not None:
            aborted = _apply(decision, bounded, dom)
    thread.join(req.abort_wait_s if aborted else None)
    wall = time.monotonic() - t0
    if thread.is_alive():
        # libvirt is still busy with the aborted job (e.g. waiting on an unreachable peer):
        # no answer for it any more; the caller reports a failure in time.
        raise MigrationError(f"migration of {name} {aborted} and was aborted; libvirt has "
                             f"not confirmed the abort within {req.abort_wait_s:.0f} s",
                             aborted=True)
    if aborted and outcome["error"] is not None:
        raise MigrationError(
            f"migration of {name} {aborted} and was aborted; the guest stays on the source",
            aborted=True)
    if outcome["error"] is not None:
        err = outcome["error"]
        msg = err.get_error_message() if isinstance(err, libvirt.libvirtError) else str(err)
        raise MigrationError(f"migration of {name} failed: {msg}")
    stats = last
    if dest_conn is not None:
        try:
            raw = dest_conn.lookupByName(name).jobStats(COMPLETED_KEPT)
            stats = JobStats.from_libvirt(raw)
        except libvirt.libvirtError:
            pass  # keep the last sample from the source
    decisions = tuple(controller.history) if controller else ()
    return MigrationResult(stats=stats, wall_s=wall, samples=samples, decisions=decisions)


Bounded = Callable[[Callable[[], object], str], object]


def _apply(decision: Decision, bounded: Bounded, dom: libvirt.virDomain) -> str | None:
    """Carry out a convergence decision; the abort reason when it aborts."""
    if decision.step is Step.SET_DOWNTIME and decision.downtime_ms is not None:
        ms = decision.downtime_ms
        _attempt(bounded, lambda: dom.migrateSetMaxDowntime(ms, 0), f"downtime limit {ms} ms")
    elif decision.step is Step.START_POSTCOPY:
        _attempt(bounded, lambda: dom.migrateStartPostCopy(0), "switch to post-copy")
    elif decision.step is Step.ABORT:
        _attempt(bounded, dom.abortJob, "abort")
        return f"did not converge ({decision.reason})"
    return None


def _attempt(bounded: Bounded, call: Callable[[], object], what: str) -> None:
    """Make a call of the watcher; a refusal or a call that does not return in time is
    logged, and the migration goes on under its deadline."""
    try:
        bounded(call, what)
    except libvirt.libvirtError as exc:
        log.warning("libvirt refused the %s: %s", what, exc.get_error_message())
    except CallTimeout as exc:
        log.warning("%s", exc)
