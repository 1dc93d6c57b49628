"""``perfplus bench agent``: the agent's own overhead per action, libvirt's time excluded.

Each action runs as Pacemaker runs it: a fresh process (interpreter start included) inside a
lab host. The agent reports, at debug level, how long it waited on libvirt; the overhead is the
process's wall time minus that. Targets: meta-data < 100 ms, monitor < 150 ms.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from perfplus_agent.errors import PerfplusError
from perfplus_agent.lab.guest_xml import guest_xml
from perfplus_agent.lab.guests import Guests
from perfplus_agent.lab.lab import Lab
from perfplus_agent.lab.layout import LabLayout
from perfplus_agent.lab.ocf_exec import LAB_AGENT_PARAMS, run_ocf

__all__ = ["AgentBench", "run_agent_bench"]

TARGETS_MS = {"meta-data": 100.0, "monitor": 150.0, "monitor (probe)": 150.0}
_TIMING = re.compile(r"timing: \S+ took ([\d.]+) ms, of which ([\d.]+) ms waiting on libvirt")


@dataclass
class AgentBench:
    """Per action: wall times and overheads (ms) of every run."""

    wall_ms: dict[str, list[float]] = field(default_factory=dict)
    overhead_ms: dict[str, list[float]] = field(default_factory=dict)

    def add(self, action: str, wall_ms: float, libvirt_ms: float) -> None:
        self.wall_ms.setdefault(action, []).append(wall_ms)
        self.overhead_ms.setdefault(action, []).append(wall_ms - libvirt_ms)

    def summary(self) -> dict[str, dict[str, float]]:
        out = {}
        for action, values in self.overhead_ms.items():
            row = {"min": min(values), "median": statistics.median(values), "max": max(values),
                   "runs": len(values), "wall_median": statistics.median(self.wall_ms[action])}
            if action in TARGETS_MS:
                row["target"] = TARGETS_MS[action]
                row["met"] = float(statistics.median(values) < TARGETS_MS[action])
            out[f"{action} overhead ms"] = row
        return out


def _metadata_run() -> float:
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "perfplus_agent.ocf.runner", "meta-data"],
                   capture_output=True, check=True, timeout=30)
    return (time.monotonic() - t0) * 1000


def run_agent_bench(say: Callable[[str], None], rounds: int = 20,
                    name: str = "benchagent") -> AgentBench:
    """Measure meta-data, monitor and probe ``rounds`` times each on a 1-host lab."""
    result = AgentBench()
    for _ in range(rounds):
        result.add("meta-data", _metadata_run(), 0.0)
    lab = Lab(LabLayout.create(name, 1), say=say)
    lab.up()
    try:
        guests = Guests(lab)
        spec = guests.prepare("bench1", 128)
        config = lab.layout.shared_dir / "bench1.xml"
        config.write_text(guest_xml(spec))
        params = {**LAB_AGENT_PARAMS, "config": str(config), "peers": ""}
        start = run_ocf(lab, "h1", "start", params)
        if start.rc != 0:
            raise PerfplusError(f"start failed: {start.exit_reason or start.stderr}")
        debug = {"HA_debug": "1"}
        for label, meta in (("monitor", {"interval": "10000"}), ("monitor (probe)",
                                                                  {"interval": "0"})):
            for _ in range(rounds):
                run = run_ocf(lab, "h1", "monitor", params, meta=meta, extra_env=debug)
                m = _TIMING.search(run.stderr)
                if run.rc != 0 or not m:
                    raise PerfplusError(f"monitor failed: {run.exit_reason or run.stderr}")
                result.add(label, run.seconds * 1000, float(m.group(2)))
        say(f"measured {rounds} runs of each action")
    finally:
        lab.down()
    return result
