"""``perfplus lab demo``: the whole story on one box.

A 3-node Pacemaker cluster comes up on simulated hosts (fencing on), guests with a memory
workload run on h1 under ``ocf:perfplus:VirtualDomain``, a LAN client keeps a TCP connection
to each and pings it, and h1 goes into maintenance (``crm node standby h1``). Every guest
moves live; the report shows per-guest downtime and service gap, whether each connection and
each guest's memory survived, and the evacuation time. Then everything is torn down.
"""

from __future__ import annotations

from collections.abc import Callable

from perfplus_agent.lab.lab import Lab
from perfplus_agent.lab.layout import LabLayout
from perfplus_agent.lab.maintenance import EvacuationReport, run_maintenance

__all__ = ["run_demo"]


def run_demo(say: Callable[[str], None], *, vms: int = 8, name: str = "demo",
             keep: bool = False, probe_hz: float = 200.0,
             method: str = "crm node standby h1") -> EvacuationReport:
    """Run the demo; the lab is removed afterwards unless ``keep``."""
    lab = Lab(LabLayout.create(name, 3), say=say)
    lab.up(cluster=True)
    try:
        return run_maintenance(lab, say, vms=vms, probe_hz=probe_hz, method=method)
    finally:
        if keep:
            say(f"lab {name!r} kept: 'perfplus lab down --name {name}' removes it")
        else:
            lab.down()
