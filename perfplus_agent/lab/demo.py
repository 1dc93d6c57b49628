"""``perfplus lab demo``: the whole story on one box, first version.

Three hosts come up, guests with a memory workload boot on h1, a client on the LAN keeps a
TCP connection to each, every guest is live-migrated to h2, and a table shows per guest the
downtime, the migration's total time and bytes, the service gap the client saw and whether
its connection survived. Then everything is torn down.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from perfplus_agent.lab.guests import Guests
from perfplus_agent.lab.lab import Lab
from perfplus_agent.lab.layout import LabLayout
from perfplus_agent.lab.service_probe import ServiceProbe
from perfplus_agent.migration.jobstats import JobStats

__all__ = ["DEMO_WORKLOAD", "MoveReport", "format_table", "run_demo"]

DEMO_WORKLOAD = "-m 64 -r 1000 -s 0.5 -i 0.5"


@dataclass(frozen=True)
class MoveReport:
    """One guest's live migration, as the demo reports it."""

    vm: str
    source: str
    target: str
    stats: JobStats
    wall_s: float
    service_gap_ms: float
    connection_kept: bool
    verified: bool


def run_demo(
    say: Callable[[str], None],
    vms: int = 3,
    memory_mib: int = 256,
    name: str = "demo",
    keep: bool = False,
) -> list[MoveReport]:
    """Run the demo and return one report per guest (the lab is removed unless ``keep``)."""
    lab = Lab(LabLayout.create(name, 3), say=say)
    lab.up()
    try:
        guests = Guests(lab)
        names = [f"vm{i}" for i in range(1, vms + 1)]
        for vm in names:
            say(f"starting {vm} on h1 ({memory_mib} MiB, workload {DEMO_WORKLOAD!r})")
            guests.create(vm, "h1", memory_mib, workload=DEMO_WORKLOAD, say=say)
        reports = []
        for vm in names:
            say(f"live-migrating {vm} h1 -> h2")
            with ServiceProbe(lab.layout, guests.spec(vm).ip) as probe:
                result = guests.migrate(vm, "h2")
                service = probe.stop()
            verified = guests.console(vm).command("v", r"^VERIFY").startswith("VERIFY OK")
            reports.append(MoveReport(vm, "h1", "h2", result.stats, result.wall_s,
                                      service.tcp_max_gap_ms, service.connection_kept, verified))
        return reports
    finally:
        if keep:
            say(f"lab {name!r} kept: 'perfplus lab down --name {name}' removes it")
        else:
            lab.down()


def format_table(reports: list[MoveReport]) -> str:
    """A fixed-width table of the moves."""
    head = (f"{'VM':6} {'move':8} {'downtime':>9} {'total':>8} {'sent':>9} {'iter':>4} "
            f"{'svc gap':>8} {'TCP kept':>8} {'memory':>7}")
    rows = [head, "-" * len(head)]
    for r in reports:
        rows.append(
            f"{r.vm:6} {r.source + '->' + r.target:8} {r.stats.downtime_ms or 0:>6} ms "
            f"{r.stats.time_elapsed_ms:>5} ms {r.stats.data_processed / 2**20:>5.1f} MiB "
            f"{r.stats.memory_iteration:>4} {r.service_gap_ms:>5.0f} ms "
            f"{'yes' if r.connection_kept else 'NO':>8} {'intact' if r.verified else 'BAD':>7}"
        )
    return "\n".join(rows)
