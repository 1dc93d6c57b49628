"""Internal deadlines, all derived from the operation's timeout Pacemaker passes in."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

__all__ = ["Deadline"]


@dataclass
class Deadline:
    """``total_s`` from creation; ``margin_s`` of it kept for finishing (abort, destroy)."""

    total_s: float
    margin_s: float = 5.0
    start: float = field(default_factory=time.monotonic)

    @property
    def work_s(self) -> float:
        """Time available for the work itself, before the margin (never below a second)."""
        return max(1.0, self.total_s - min(self.margin_s, self.total_s / 2))

    def remaining(self) -> float:
        """Seconds left of the work time."""
        return self.start + self.work_s - time.monotonic()

    def remaining_total(self) -> float:
        """Seconds left until the operation's own timeout."""
        return self.start + self.total_s - time.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0
