"""The maintenance scenario: guests under Pacemaker run on h1 with a memory workload, a LAN
client talks to each, and h1 is put in standby. Every guest must move live (no restart:
its boot marker never appears again), every client connection must survive, and the report
gives per-guest downtime and service gap and the evacuation time."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

import libvirt

from perfplus_agent.errors import PerfplusError
from perfplus_agent.lab.cluster_status import cluster_view
from perfplus_agent.lab.guest_xml import guest_xml
from perfplus_agent.lab.guests import Guests
from perfplus_agent.lab.lab import Lab
from perfplus_agent.lab.ocf_exec import LAB_AGENT_PARAMS
from perfplus_agent.lab.service_probe import ServiceProbe
from perfplus_agent.libvirt_conn import open_connection
from perfplus_agent.migration.live import COMPLETED_KEPT

__all__ = ["METHODS", "EvacuationReport", "GuestMove", "format_report", "run_maintenance"]

WORKLOAD = "-m 32 -r 500 -s 0.5 -i 0.5"
SETTLE_TIMEOUT = 180.0


@dataclass(frozen=True)
class GuestMove:
    """One guest's evacuation."""

    vm: str
    target: str
    downtime_ms: int | None
    service_gap_ms: float
    connection_kept: bool
    restarted: bool
    memory_intact: bool


@dataclass(frozen=True)
class EvacuationReport:
    moves: list[GuestMove]
    evacuation_s: float
    method: str

    @property
    def worst_downtime_ms(self) -> int:
        return max((m.downtime_ms or 0) for m in self.moves)

    @property
    def worst_gap_ms(self) -> float:
        return max(m.service_gap_ms for m in self.moves)

    @property
    def all_live(self) -> bool:
        return all(m.connection_kept and not m.restarted and m.memory_intact
                   for m in self.moves)


def _crm(lab: Lab, argv: list[str], timeout: float = 120.0) -> str:
    return lab.run_in("h2", argv, timeout=timeout).stdout  # h1 is the node being evacuated


def _define(lab: Lab, guests: Guests, vm: str, say: Callable[[str], None]) -> None:
    spec = guests.prepare(vm, 256, workload=WORKLOAD, say=say)
    config = lab.layout.shared_dir / f"{vm}.xml"
    config.write_text(guest_xml(spec))
    settings = {**LAB_AGENT_PARAMS, "config": str(config), "migration_policy": "minimal-downtime"}
    params = " ".join(f"{k}={v}" for k, v in settings.items())
    _crm(lab, ["sh", "-c",
               f"crm configure primitive {vm} ocf:perfplus:VirtualDomain params {params} "
               "meta allow-migrate=true target-role=Stopped "
               "op start timeout=90s op stop timeout=90s "
               "op monitor interval=10s timeout=30s op migrate_to timeout=120s "
               "op migrate_from timeout=60s && "
               f"crm configure location {vm}-on-h1 {vm} 100: h1"])


def _placement(lab: Lab) -> dict[str, tuple[str, ...]]:
    view = cluster_view(lab.init_pid(lab.layout.host_named("h2")))
    return view.resources if view else {}


def _wait(lab: Lab, vms: list[str], ok: Callable[[tuple[str, ...]], bool], what: str) -> None:
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while time.monotonic() < deadline:
        placement = _placement(lab)
        if all(ok(placement.get(vm, ())) for vm in vms):
            return
        time.sleep(0.25)
    raise PerfplusError(f"guests not {what} within {SETTLE_TIMEOUT:.0f} s: {_placement(lab)}")


def _downtime(guests: Guests, vm: str, host: str) -> int | None:
    conn = open_connection(guests.layout.host_named(host).local_uri)
    try:
        stats = conn.lookupByName(vm).jobStats(COMPLETED_KEPT)
        return int(stats["downtime"]) if "downtime" in stats else None
    except libvirt.libvirtError:
        return None
    finally:
        conn.close()


def _targets(names: list[str]) -> list[tuple[str, str]]:
    """Each guest with the node a move command sends it to (spread over h2 and h3)."""
    return [(vm, "h2" if i % 2 == 0 else "h3") for i, vm in enumerate(names)]


def _stack_stop(lab: Lab, _names: list[str]) -> None:
    """Stop h1's cluster stack (its guests keep running): Pacemaker moves them first."""
    os.kill(lab.init_pid(lab.layout.host_named("h1")), signal.SIGHUP)


# How an administrator empties h1, as the commands they would type (run on h2).
METHODS: dict[str, Callable[[Lab, list[str]], None]] = {
    "crm node standby h1": lambda lab, _n: _crm(lab, ["crm", "node", "standby", "h1"]),
    "pcs node standby h1": lambda lab, _n: _crm(lab, ["pcs", "node", "standby", "h1"]),
    "crm resource move": lambda lab, names: [
        _crm(lab, ["crm", "resource", "move", vm, to]) for vm, to in _targets(names)],
    "pcs resource move": lambda lab, names: [
        _crm(lab, ["pcs", "resource", "move-with-constraint", vm, to])
        for vm, to in _targets(names)],
    "cluster stack stop on h1": _stack_stop,
}


def run_maintenance(lab: Lab, say: Callable[[str], None], vms: int = 8,
                    probe_hz: float = 1000.0,
                    method: str = "crm node standby h1") -> EvacuationReport:
    """Evacuate h1 of a cluster lab with ``method`` (a key of METHODS); report every guest."""
    if method not in METHODS:
        raise PerfplusError(f"unknown evacuation method {method!r}; known: "
                            + ", ".join(METHODS))
    guests = Guests(lab)
    names = [f"vm{i}" for i in range(1, vms + 1)]
    _crm(lab, ["crm", "configure", "rsc_defaults", "resource-stickiness=100"])
    _crm(lab, ["crm", "configure", "property", "migration-limit=2"])
    # Emulated (TCG) guests keep the lab's CPUs busy; Pacemaker would read that as an
    # overloaded node and run one action at a time. In the lab the load means nothing.
    _crm(lab, ["crm", "configure", "property", "load-threshold=1000%"])
    for vm in names:
        _define(lab, guests, vm, say)  # stopped, so that they start where they belong
    say(f"starting {vms} guests on h1 under Pacemaker")
    for vm in names:
        _crm(lab, ["crm", "resource", "start", vm])
    _wait(lab, names, lambda w: w == ("h1",), "running on h1")
    for vm in names:
        guests.wait_booted(vm, lab.layout.host_named("h1"))
    offsets = {vm: {h.name: guests.console(vm, h).size() for h in lab.layout.all_hosts()}
               for vm in names}
    probes = {vm: ServiceProbe(lab.layout, guests.spec(vm).ip, rate_hz=probe_hz).start(0.2)
              for vm in names}
    try:
        say(method)
        t0 = time.monotonic()
        METHODS[method](lab, names)
        _wait(lab, names, lambda w: len(w) == 1 and w[0] != "h1", "moved off h1")
        _crm(lab, ["crm_resource", "--wait", "--timeout=120s"], timeout=180)
        evacuation = time.monotonic() - t0
    finally:
        results = {vm: probe.stop() for vm, probe in probes.items()}
    moves = []
    placement = _placement(lab)
    for vm in names:
        target = placement[vm][0]
        host = lab.layout.host_named(target)
        lines, _ = guests.console(vm, host).lines(offsets[vm][target])
        console = guests.console(vm, host)
        moves.append(GuestMove(
            vm=vm, target=target, downtime_ms=_downtime(guests, vm, target),
            service_gap_ms=results[vm].tcp_max_gap_ms,
            connection_kept=results[vm].connection_kept,
            restarted=any("PERFPLUS-GUEST BOOTED" in ln for ln in lines),
            memory_intact=console.command("v", r"^VERIFY").startswith("VERIFY OK"),
        ))
    return EvacuationReport(moves, evacuation, method)


def format_report(report: EvacuationReport) -> str:
    head = (f"{'VM':5} {'to':3} {'downtime':>9} {'svc gap':>8} {'TCP kept':>8} "
            f"{'restart':>7} {'memory':>7}")
    rows = [head, "-" * len(head)]
    for m in report.moves:
        rows.append(f"{m.vm:5} {m.target:3} {m.downtime_ms or 0:>6} ms {m.service_gap_ms:>5.0f} ms "
                    f"{'yes' if m.connection_kept else 'NO':>8} "
                    f"{'YES' if m.restarted else 'no':>7} "
                    f"{'intact' if m.memory_intact else 'BAD':>7}")
    rows.append("")
    rows.append(f"{report.method}: {len(report.moves)} guests evacuated in "
                f"{report.evacuation_s:.1f} s, worst downtime {report.worst_downtime_ms} ms, "
                f"worst service gap {report.worst_gap_ms:.0f} ms, "
                f"{sum(m.connection_kept for m in report.moves)}/{len(report.moves)} "
                "connections kept")
    return "\n".join(rows)
