"""``perfplus bench migrate``: Perf+ against plain pre-copy and XBZRLE, side by side, in one run.

The lab's hosts run a migration daemon each; the migration link is shaped (32 MiB/s by
default) so that pre-copy needs several passes under TCG. Every variant goes through the same
two daemons and the same encrypted link, so that only the filter differs:

* ``plain``: the stream is parsed and counted (``measure``) but every page is forwarded;
* ``perfplus``: unchanged pages are dropped;
* ``xbzrle-64`` / ``xbzrle-full``: QEMU's XBZRLE with its default 64 MiB cache, and with a
  cache as large as guest RAM (stream counted, nothing dropped).

Scenarios (a fresh guest each, migrated h1 -> h2 -> h1 ... once per variant):

* ``paper``: half of the writes rewrite a page's own content; stop-and-copy is forced when
  pass 5 starts (the published method): pages in the final stop-and-copy, and downtime;
* ``converge``: the same workload with QEMU's own convergence: wire bytes, total time,
  downtime, against plain and both XBZRLE variants, and the memory each method holds;
* ``hard``: a workload that rewrites mostly the same content, fast: can each converge within
  the time limit;
* ``random``: random words written all over the working set (nothing for Perf+ to drop): the
  cost of the filter.

After every migration the guest checks its own memory (a per-page digest of every write).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from perfplus_agent.bench.daemon_runs import daemon_migrate, in_turns
from perfplus_agent.errors import PerfplusError, UsageError
from perfplus_agent.lab.guests import Guests
from perfplus_agent.lab.lab import Lab
from perfplus_agent.lab.layout import LabLayout

__all__ = ["SCENARIOS", "MigrateBench", "Run", "as_json", "format_table", "run_migrate_bench"]

PAPER_PASSES = 4  # stop-and-copy when the fifth pass starts


@dataclass(frozen=True)
class Variant:
    name: str
    filter: str  # the daemon's filter mode
    xbzrle_cache_mib: int = 0  # -1: as large as guest RAM


@dataclass(frozen=True)
class Scenario:
    name: str
    # The dirtier's arguments; WSET becomes a quarter of the guest's RAM (the kernel, the
    # initramfs and the dirtier's digests need the rest), RATE and HARD the write rates.
    workload: str
    variants: tuple[str, ...]
    stop_copy_after: int = 0
    timeout_s: float = 120.0


VARIANTS = {v.name: v for v in (
    Variant("plain", "measure"),
    Variant("perfplus", "perfplus"),
    Variant("xbzrle-64", "measure", 64),
    Variant("xbzrle-full", "measure", -1),
)}
SCENARIOS = {s.name: s for s in (
    Scenario("paper", "-m WSET -r RATE -s 0.5 -i 0", ("plain", "perfplus"),
             stop_copy_after=PAPER_PASSES),
    Scenario("converge", "-m WSET -r RATE -s 0.5 -i 0",
             ("plain", "perfplus", "xbzrle-64", "xbzrle-full")),
    Scenario("hard", "-m WSET -r HARD -s 0.9 -i 0", ("plain", "perfplus"), timeout_s=60.0),
    Scenario("random", "-m WSET -r RATE -x -i 0", ("plain", "perfplus")),
)}


@dataclass
class Run:
    """One migration: what libvirt, the daemon's relay and the filter reported."""

    scenario: str
    variant: str
    source: str
    target: str
    ok: bool
    round: int = 0
    error: str = ""
    wall_s: float = 0.0
    downtime_ms: int | None = None
    passes: int = 0
    wire_bytes: int = 0  # after the filter, what crossed the migration link (payload)
    qemu_bytes: int = 0  # what QEMU sent into the daemon
    pages_seen: int = 0
    pages_forwarded: int = 0
    pages_unchanged: int = 0  # matched their tag (dropped by perfplus, counted by plain)
    final_pass_pages: int = 0  # pages of the last pass (the stop-and-copy)
    filter_table_bytes: int = 0
    xbzrle_cache_bytes: int = 0
    memory_intact: bool = False


@dataclass
class MigrateBench:
    link: str
    memory_mib: int
    rate: int
    hard_rate: int
    rounds: int = 1
    runs: list[Run] = field(default_factory=list)

    def run(self, scenario: str, variant: str, round_: int = 0) -> Run | None:
        return next((r for r in self.runs if r.scenario == scenario and r.variant == variant
                     and r.round == round_), None)

    def summary(self) -> dict[str, Any]:
        """Ratios against plain (and XBZRLE) for the targets of the filter issue: the
        median over the rounds of each round's ratio."""
        out: dict[str, Any] = {"rounds": self.rounds}

        def ratio(s: str, a: str, b: str, key: str) -> float | None:
            found = []
            for i in range(self.rounds):
                x, y = self.run(s, a, i), self.run(s, b, i)
                if x and y and x.ok and y.ok:
                    num, den = getattr(x, key), getattr(y, key)
                    if num is not None and den:
                        found.append(num / den)
            return round(statistics.median(found), 3) if found else None

        out["paper_final_pages_ratio"] = ratio("paper", "perfplus", "plain", "final_pass_pages")
        out["paper_downtime_ratio"] = ratio("paper", "perfplus", "plain", "downtime_ms")
        out["converge_wire_bytes_ratio"] = ratio("converge", "perfplus", "plain", "wire_bytes")
        out["converge_time_ratio"] = ratio("converge", "perfplus", "plain", "wall_s")
        out["converge_downtime_ratio"] = ratio("converge", "perfplus", "plain", "downtime_ms")
        out["vs_xbzrle_full_bytes_ratio"] = ratio("converge", "perfplus", "xbzrle-full",
                                                  "wire_bytes")
        out["vs_xbzrle_64_bytes_ratio"] = ratio("converge", "perfplus", "xbzrle-64",
                                                "wire_bytes")
        full, pp = self.run("converge", "xbzrle-full"), self.run("converge", "perfplus")
        if full and pp and pp.filter_table_bytes:
            out["memory_vs_xbzrle_full"] = round(pp.filter_table_bytes
                                                 / full.xbzrle_cache_bytes, 4)
            out["filter_mib_per_guest_gib"] = round(
                pp.filter_table_bytes / 2**20 / (self.memory_mib / 1024), 2)
        out["hard_plain_converged"] = self._converged("plain")
        out["hard_perfplus_converged"] = self._converged("perfplus")
        out["random_wire_bytes_ratio"] = ratio("random", "perfplus", "plain", "wire_bytes")
        out["all_memory_intact"] = all(r.memory_intact for r in self.runs if r.ok)
        return out

    def _converged(self, variant: str) -> str | None:
        """In how many rounds the ``hard`` scenario's migration converged, e.g. "2/3"."""
        runs = [r for r in self.runs if r.scenario == "hard" and r.variant == variant]
        return f"{sum(r.ok for r in runs)}/{len(runs)}" if runs else None


def _run_from_answer(run: Run, answer: dict[str, Any]) -> None:
    stats = answer.get("stats") or {}
    relay = answer.get("relay") or {}
    pp = answer.get("perfplus") or {}
    totals = pp.get("totals") or {}
    iterations = [it for it in pp.get("iterations") or []
                  if it.get("pages_seen") or it.get("other_pages") or it.get("zero_pages")]
    run.wall_s = float(answer.get("wall_s") or 0.0)
    run.downtime_ms = stats.get("downtime_ms")
    run.passes = int(stats.get("memory_iteration") or 0)
    run.wire_bytes = int(relay.get("bytes_out") or 0)
    run.qemu_bytes = int(relay.get("bytes_in") or 0)
    run.pages_seen = int(totals.get("pages_seen") or 0)
    run.pages_forwarded = int(totals.get("pages_forwarded") or 0)
    run.pages_unchanged = int(totals.get("pages_unchanged") or 0)
    if iterations:
        last = iterations[-1]
        run.final_pass_pages = int(last.get("pages_forwarded", 0)) + int(
            last.get("other_pages", 0))
    run.filter_table_bytes = int(pp.get("table_bytes") or 0)


def _migrate(guests: Guests, vm: str, scenario: Scenario, variant: Variant, *,
             memory_mib: int, round_: int) -> Run:
    lab = guests.lab
    src = guests.where(vm).name
    dst = "h2" if src == "h1" else "h1"
    cache = memory_mib if variant.xbzrle_cache_mib < 0 else variant.xbzrle_cache_mib
    run = Run(scenario.name, variant.name, src, dst, ok=False, round=round_,
              xbzrle_cache_bytes=cache << 20)
    answer, run.error = daemon_migrate(
        lab, vm, src, dst, filter_mode=variant.filter, timeout_s=scenario.timeout_s,
        xbzrle_cache_mib=cache, stop_copy_after=scenario.stop_copy_after)
    if answer is not None:
        _run_from_answer(run, answer)
        run.ok = True
    console = guests.console(vm)
    run.memory_intact = console.command("v", r"^VERIFY", timeout=60).startswith("VERIFY OK")
    return run


def run_migrate_bench(say: Callable[[str], None], *, link: str = "32mibps",
                      memory_mib: int = 256, rate: int = 3000, hard_rate: int = 30000,
                      scenarios: tuple[str, ...] = tuple(SCENARIOS), rounds: int = 1,
                      name: str = "benchmig") -> MigrateBench:
    """Run the scenarios ``rounds`` times on a lab of three hosts (removed afterwards);
    each scenario's guest is migrated back and forth, every variant once per round (in
    reverse order every other round)."""
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        raise PerfplusError(f"unknown scenario(s) {', '.join(unknown)}; known: "
                            + ", ".join(SCENARIOS))
    if rounds < 1:
        raise UsageError("--rounds must be at least 1")
    bench = MigrateBench(link, memory_mib, rate, hard_rate, rounds)
    lab = Lab(LabLayout.create(name, 3), say=say)
    lab.up(migration_link=link)
    guests = Guests(lab)
    try:
        for sname in scenarios:
            scenario = SCENARIOS[sname]
            workload = (scenario.workload.replace("WSET", str(memory_mib // 4))
                        .replace("RATE", str(rate)).replace("HARD", str(hard_rate)))
            vm = f"bm-{sname}"
            say(f"{sname}: guest of {memory_mib} MiB running dirtier {workload}")
            with guests.temporary(vm, "h1", memory_mib, workload=workload, say=say):
                for i, vname in in_turns(scenario.variants, rounds):
                    run = _migrate(guests, vm, scenario, VARIANTS[vname],
                                   memory_mib=memory_mib, round_=i)
                    bench.runs.append(run)
                    say(_row(run))
    finally:
        lab.down()
    return bench


def _row(r: Run) -> str:
    if not r.ok:
        return (f"{r.scenario:9} {r.variant:12} {r.round:5} {r.source}->{r.target} FAILED: "
                f"{r.error} (memory {'intact' if r.memory_intact else 'BAD'})")
    return (f"{r.scenario:9} {r.variant:12} {r.round:5} {r.wall_s:7.1f} s "
            f"{r.downtime_ms or 0:6} ms "
            f"{r.passes:3} passes {r.wire_bytes / 2**20:8.1f} MiB wire "
            f"{r.final_pass_pages:7} last-pass pages {r.pages_unchanged:7} unchanged "
            f"memory {'intact' if r.memory_intact else 'BAD'}")


def format_table(bench: MigrateBench) -> str:
    head = (f"{'scenario':9} {'variant':12} {'round':5} {'time':>9} {'downtime':>9} {'passes':>9} "
            f"{'wire':>12} {'last pass':>16} {'unchanged':>17} memory")
    lines = [head, "-" * len(head), *(_row(r) for r in bench.runs), ""]
    lines += [f"{k:30} {v}" for k, v in bench.summary().items()]
    return "\n".join(lines)


def as_json(bench: MigrateBench) -> dict[str, Any]:
    return asdict(bench)
