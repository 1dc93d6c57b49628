"""One migration's filter state, shared by its channels, and the multifd barrier.

A migration has one main channel and, with multifd, ``channels`` more; each is rewritten
by its own thread. They share one :class:`Filter` (the per-page tags) and mirror the
destination's barrier exactly (QEMU 7.2 ``multifd_recv_sync_main``): the main channel's
``k``-th RAM end-of-section waits until every multifd channel has passed its ``k``-th SYNC
packet, and a multifd channel that passed its ``k``-th SYNC waits until the main channel has
passed its ``k``-th end-of-section. Without it a channel running ahead could record a page's
tag after the main channel invalidated that page (zero pages travel on the main channel),
and a later identical page would be dropped although the destination holds zeros.
"""

from __future__ import annotations

import logging
import threading
import time

from perfplus_agent.errors import PerfplusError
from perfplus_agent.perfplus_c import DEFAULT_ALGORITHM, Filter, new_key
from perfplus_agent.stream.stats import MigrationStats

__all__ = ["BARRIER_TIMEOUT_S", "StreamAborted", "StreamSession"]

log = logging.getLogger(__name__)

BARRIER_TIMEOUT_S = 120.0


class StreamAborted(PerfplusError):
    """The rewriter cannot go on without risking the guest: the migration must fail (the
    source QEMU then keeps running the guest)."""


class StreamSession:
    """State of one filtered migration: tags, statistics, pass-through switch, barrier."""

    def __init__(self, channels: int = 0, algorithm: str = DEFAULT_ALGORITHM,
                 dropping: bool = True, barrier_timeout_s: float = BARRIER_TIMEOUT_S) -> None:
        """``dropping=False`` measures only: the same parsing, tags and barrier, every page
        forwarded; ``pages_unchanged`` counts what a dropping session would have dropped."""
        if channels < 0:
            raise ValueError("channels must be >= 0")
        self.channels = channels
        self.algorithm = algorithm
        self.dropping = dropping
        self.filter = Filter(algorithm, new_key(algorithm), dropping=dropping)
        self.stats = MigrationStats(mode="filter" if dropping else "measure")
        self.barrier_timeout_s = barrier_timeout_s
        self._cond = threading.Condition()
        self._main_eos = 0
        self._syncs = [0] * channels
        self._filtering = True
        self._aborted: str | None = None

    # -- pass-through -----------------------------------------------------------------
    @property
    def filtering(self) -> bool:
        """False once any channel met something it does not understand: from then on no
        channel drops a page (every tag might be stale), and barriers no longer apply."""
        return self._filtering

    def stand_aside(self, reason: str) -> None:
        """Switch the whole migration to verbatim pass-through (logged once)."""
        with self._cond:
            if not self._filtering:
                return
            self._filtering = False
            self.stats.mode = "passthrough"
            self.stats.passthrough_reason = reason
            self._cond.notify_all()
        # A channel that read ``filtering`` just before may still be filtering a batch: the
        # filter itself stops dropping, under the lock all page work takes.
        self.filter.stop_dropping()
        log.warning("Perf+ stands aside for this migration (verbatim pass-through): %s", reason)

    def abort(self, reason: str) -> StreamAborted:
        """Mark the migration failed; returns the exception for the caller to raise."""
        with self._cond:
            self._aborted = self._aborted or reason
            self._cond.notify_all()
        log.error("Perf+ aborts the migration: %s", reason)
        return StreamAborted(f"Perf+ aborted the migration: {reason}")

    def close(self, reason: str) -> None:
        """The connections are closing (normally or not): release every barrier wait."""
        with self._cond:
            self._aborted = self._aborted or reason
            self._cond.notify_all()

    # -- barrier ----------------------------------------------------------------------
    def main_passed_eos(self) -> int:
        """The main channel consumed a RAM end-of-section; returns how many so far."""
        with self._cond:
            self._main_eos += 1
            self._cond.notify_all()
            return self._main_eos

    def multifd_passed_sync(self, channel: int) -> int:
        with self._cond:
            self._syncs[channel] += 1
            self._cond.notify_all()
            return self._syncs[channel]

    def main_wait(self, eos: int) -> None:
        """Before the main channel applies records after its ``eos``-th end-of-section."""
        self._wait(lambda: all(s >= eos for s in self._syncs),
                   f"multifd channels did not reach SYNC #{eos}")

    def multifd_wait(self, sync: int) -> None:
        """Before a multifd channel applies packets after its ``sync``-th SYNC. As on the
        destination (QEMU releases its receive threads only once the main thread reached the
        end of section and *every* channel reached that SYNC), no channel may start interval
        ``sync + 1`` while another is still in interval ``sync``: the tags must see the
        pages in the order the destination writes them."""
        self._wait(lambda: self._main_eos >= sync and all(s >= sync for s in self._syncs),
                   f"main channel and every multifd channel did not reach barrier #{sync}")

    def _wait(self, ready: object, what: str) -> None:
        deadline = time.monotonic() + self.barrier_timeout_s
        with self._cond:
            while True:
                if self._aborted:
                    raise StreamAborted(f"Perf+ aborted the migration: {self._aborted}")
                if not self._filtering or ready():  # type: ignore[operator]
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
        raise self.abort(f"{what} within {self.barrier_timeout_s:.0f} s")

    @property
    def memory_bytes(self) -> int:
        """Bytes held by this migration's tag tables."""
        return self.filter.memory_bytes
