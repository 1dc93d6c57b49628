"""``perfplus bench lab``: how fast the lab comes up, boots a guest and migrates one.

Targets (from the lab issue): 3 hosts up in < 30 s, a guest booted to its workload in < 5 s
under TCG, a 256 MiB idle guest migrated in < 2 s on an unshaped link.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from perfplus_agent.lab.accel import choose_accel
from perfplus_agent.lab.guests import Guests
from perfplus_agent.lab.image import build_image
from perfplus_agent.lab.lab import Lab
from perfplus_agent.lab.layout import LabLayout

__all__ = ["LabBench", "run_lab_bench"]

TARGETS = {"lab_up_s": 30.0, "boot_s": 5.0, "migrate_idle_s": 2.0}


def _summary(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values),
            "runs": len(values)}


@dataclass
class LabBench:
    """Raw samples of every measurement, and their summaries against the targets."""

    accel: str = ""
    lab_up_s: list[float] = field(default_factory=list)
    lab_down_s: list[float] = field(default_factory=list)
    boot_s: list[float] = field(default_factory=list)
    migrate_idle_s: list[float] = field(default_factory=list)
    migrate_idle_downtime_ms: list[float] = field(default_factory=list)
    migrate_idle_libvirt_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, dict[str, float]]:
        out = {}
        for key in ("lab_up_s", "lab_down_s", "boot_s", "migrate_idle_s",
                    "migrate_idle_downtime_ms", "migrate_idle_libvirt_ms"):
            values = getattr(self, key)
            if values:
                out[key] = _summary(values)
                if key in TARGETS:
                    out[key]["target"] = TARGETS[key]
                    out[key]["met"] = float(max(values) < TARGETS[key])
        return out


def run_lab_bench(say: Callable[[str], None], rounds: int = 3, name: str = "bench") -> LabBench:
    """Measure ``rounds`` lab builds, guest boots and idle migrations."""
    result = LabBench()
    result.accel = choose_accel(build_image(say)).name  # built and probed outside the timings
    lab = Lab(LabLayout.create(name, 3), say=say)
    lab.down()
    for i in range(rounds):
        t0 = time.monotonic()
        lab.up()
        result.lab_up_s.append(time.monotonic() - t0)
        guests = Guests(lab)
        try:
            t0 = time.monotonic()
            guests.create(f"boot{i}", "h1", 256, workload="-m 32 -r 100 -i 1")
            result.boot_s.append(time.monotonic() - t0)
            guests.create(f"idle{i}", "h1", 256)
            for to in ("h2", "h1"):
                t0 = time.monotonic()
                res = guests.migrate(f"idle{i}", to)
                result.migrate_idle_s.append(time.monotonic() - t0)
                result.migrate_idle_downtime_ms.append(float(res.stats.downtime_ms or 0))
                result.migrate_idle_libvirt_ms.append(float(res.stats.time_elapsed_ms))
        finally:
            t0 = time.monotonic()
            lab.down()
            result.lab_down_s.append(time.monotonic() - t0)
        say(f"round {i + 1}/{rounds}: up {result.lab_up_s[-1]:.1f} s, boot "
            f"{result.boot_s[-1]:.1f} s, idle migration {result.migrate_idle_s[-1]:.2f} s")
    return result
