"""Per-migration statistics measured by the stream rewriter itself.

An *iteration* here is one RAM section of the main channel (QEMU sends a START section at
setup, a PART section per ``ram_save_iterate`` call — at most about 50 ms of sending each —
and an END section for the stop-and-copy); iteration ``k`` is everything before the
``k+1``-th RAM end-of-section marker, on the main channel and, for multifd, on every channel
up to its ``k+1``-th SYNC packet. QEMU's own pass count (``dirty-sync-count``) comes from
its job statistics.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field

__all__ = ["IterationStats", "MigrationStats"]

COUNTERS = ("pages_seen", "pages_forwarded", "pages_dropped", "pages_unchanged", "zero_pages",
            "other_pages", "bytes_in", "bytes_out")


@dataclass
class IterationStats:
    """What one iteration carried, before and after the filter."""

    index: int
    started_s: float
    ended_s: float | None = None
    final: bool = False  # the END section: the stop-and-copy
    pages_seen: int = 0  # normal pages the source sent
    pages_forwarded: int = 0
    pages_dropped: int = 0  # unchanged since last forwarded: not sent
    pages_unchanged: int = 0  # matched their tag: dropped, or forwarded when measuring
    zero_pages: int = 0
    other_pages: int = 0  # XBZRLE or compressed records (passed, tag invalidated)
    bytes_in: int = 0
    bytes_out: int = 0

    @property
    def duration_s(self) -> float | None:
        return None if self.ended_s is None else self.ended_s - self.started_s


@dataclass
class MigrationStats:
    """Totals and per-iteration figures of one migration; safe to update from channel threads."""

    mode: str = "filter"  # "filter" or "measure", "passthrough" once the rewriter stood aside
    passthrough_reason: str | None = None
    iterations: list[IterationStats] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, index: int, **counts: int) -> None:
        """Add ``counts`` to iteration ``index`` (created on first use)."""
        with self._lock:
            it = self._iteration(index)
            for name, value in counts.items():
                setattr(it, name, getattr(it, name) + value)

    def close_iteration(self, index: int, final: bool = False) -> None:
        with self._lock:
            it = self._iteration(index)
            it.ended_s = time.monotonic() - self.started
            it.final = final

    def _iteration(self, index: int) -> IterationStats:
        while len(self.iterations) <= index:
            begun = self.iterations[-1].ended_s if self.iterations else None
            self.iterations.append(IterationStats(
                index=len(self.iterations),
                started_s=begun if begun is not None else time.monotonic() - self.started))
        return self.iterations[index]

    def totals(self) -> dict[str, int]:
        with self._lock:
            return {name: sum(getattr(it, name) for it in self.iterations) for name in COUNTERS}

    def as_dict(self) -> dict[str, object]:
        with self._lock:
            iterations = [asdict(it) for it in self.iterations]
        return {"mode": self.mode, "passthrough_reason": self.passthrough_reason,
                "totals": self.totals(), "iterations": iterations}
