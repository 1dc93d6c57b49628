"""libvirt job statistics as a typed record, in the units the project reports."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["JobStats"]


@dataclass(frozen=True)
class JobStats:
    """One sample (or the final figures) of a migration job; sizes in bytes, times in ms."""

    time_elapsed_ms: int = 0
    downtime_ms: int | None = None
    setup_ms: int | None = None
    data_total: int = 0
    data_processed: int = 0
    data_remaining: int = 0
    memory_total: int = 0
    memory_processed: int = 0
    memory_remaining: int = 0
    memory_iteration: int = 0
    memory_dirty_rate: int = 0  # pages per second
    memory_bps: int = 0
    memory_normal_pages: int = 0
    memory_constant_pages: int = 0

    @classmethod
    def from_libvirt(cls, raw: dict[str, Any]) -> JobStats:
        """Build from ``virDomainGetJobStats`` typed parameters (missing keys stay default)."""

        def get(key: str, default: int | None = 0) -> int | None:
            value = raw.get(key)
            return int(value) if value is not None else default

        return cls(
            time_elapsed_ms=get("time_elapsed") or 0,
            downtime_ms=get("downtime", None),
            setup_ms=get("setup_time", None),
            data_total=get("data_total") or 0,
            data_processed=get("data_processed") or 0,
            data_remaining=get("data_remaining") or 0,
            memory_total=get("memory_total") or 0,
            memory_processed=get("memory_processed") or 0,
            memory_remaining=get("memory_remaining") or 0,
            memory_iteration=get("memory_iteration") or 0,
            memory_dirty_rate=get("memory_dirty_rate") or 0,
            memory_bps=get("memory_bps") or 0,
            memory_normal_pages=get("memory_normal") or 0,
            memory_constant_pages=get("memory_constant") or 0,
        )

    @property
    def progress(self) -> float:
        """Fraction of the data sent so far (0..1), as libvirt estimates it."""
        if self.data_total <= 0:
            return 0.0
        return min(1.0, self.data_processed / self.data_total)

    def as_dict(self) -> dict[str, int | None]:
        return asdict(self)
