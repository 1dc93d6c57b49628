"""``perfplus bench proxy``: what carrying a migration through the Perf+ daemons costs.

Two lab hosts, migration link unshaped. A guest whose workload fills most of its RAM (all
but a quarter, or 128 MiB if more, for the kernel and initramfs) with random content and then
stays idle (every page crosses once, none is resent, nothing for the filter to drop) is moved
back and forth:

* ``direct``: libvirt migrates it QEMU to QEMU over the migration network (what the upstream
  agent does);
* ``relay``: through a bare relay pair instead (bench/bare_relay.py: ``splice(2)`` in each
  host, no parsing, no encryption): what any proxy pair costs on this machine, a ceiling for
  the daemons;
* ``relay-unix``: the same relays with QEMU on UNIX sockets instead of loopback TCP (a
  ``unix://`` migration URI): whether that would make proxies cheaper;
* ``daemons``: through both hosts' daemons with the filter on: read, parsed, hashed,
  encrypted, decrypted (``perfplus daemon migrate``).

Throughput is what QEMU sent divided by libvirt's migration time, the same figures for all.
While a migration runs, the source daemon's RSS is sampled, and both daemons' CPU time and the
whole machine's busy CPU time are read before and after. Memory per migrated GiB is the slope
of the source daemon's peak RSS growth between two guest sizes (the fixed buffers cancel out),
shown next to the filter's own table size. A first migration through the daemons warms them
up (its RSS growth is the "cold" figure); then every round runs every variant, and medians over
the rounds are reported.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from perfplus_agent.bench.bare_relay import relay_pair
from perfplus_agent.bench.daemon_runs import daemon_migrate, in_turns
from perfplus_agent.errors import PerfplusError, UsageError
from perfplus_agent.lab.guests import Guests
from perfplus_agent.lab.host_procs import daemon_pid
from perfplus_agent.lab.lab import Lab
from perfplus_agent.lab.layout import LabLayout
from perfplus_agent.migration.jobstats import JobStats

__all__ = ["ProxyBench", "ProxyRun", "filled_mib", "format_table", "run_proxy_bench"]

VARIANTS = ("direct", "relay", "relay-unix", "daemons")
TARGET_RATIO = 0.9
TARGET_MIB_PER_GIB = 5.0
RSS_SAMPLE_S = 0.02
MIGRATION_TIMEOUT_S = 300.0
GUEST_SYSTEM_MIB = 128  # kernel, initramfs and the workload's digests


@dataclass
class ProxyRun:
    """One migration and what it cost."""

    memory_mib: int
    variant: str
    source: str
    target: str
    ok: bool = False
    error: str = ""
    warmup: bool = False
    qemu_bytes: int = 0  # what QEMU sent (libvirt's data_processed)
    time_s: float = 0.0  # libvirt's migration time
    throughput_mib_s: float = 0.0
    downtime_ms: int | None = None
    wire_bytes: int = 0  # daemons: what crossed the link, encrypted payload
    src_daemon_cpu_s: float = 0.0
    dst_daemon_cpu_s: float = 0.0
    src_daemon_rss_growth_mib: float = 0.0  # peak during the migration minus just before
    machine_cpu_s: float = 0.0  # every process of the machine (both hosts), while it ran
    machine_busy_cores: float = 0.0  # machine_cpu_s over the wall time of the migration
    filter_table_bytes: int = 0
    memory_intact: bool = False


@dataclass
class ProxyBench:
    memory_mib: tuple[int, ...]
    rounds: int
    runs: list[ProxyRun] = field(default_factory=list)

    def _measured(self, size: int, variant: str) -> list[ProxyRun]:
        return [r for r in self.runs if r.ok and not r.warmup and r.memory_mib == size
                and r.variant == variant]

    def by_size(self) -> dict[int, dict[str, Any]]:
        """Medians per guest size: throughputs, their ratio, daemon CPU and RSS growth."""
        out: dict[int, dict[str, Any]] = {}
        for size in self.memory_mib:
            runs = {v: self._measured(size, v) for v in VARIANTS}
            if not all(runs.values()):
                continue
            daemons = runs["daemons"]
            speed = {v: statistics.median(r.throughput_mib_s for r in rs)
                     for v, rs in runs.items()}
            gib = [r.qemu_bytes / 2**30 for r in daemons]
            out[size] = {
                **{f"{_key(v)}_mib_s": round(speed[v], 1) for v in VARIANTS},
                "throughput_ratio": round(speed["daemons"] / speed["direct"], 3),
                "relay_ratio": round(speed["relay"] / speed["direct"], 3),
                "relay_unix_ratio": round(speed["relay-unix"] / speed["direct"], 3),
                "daemons_vs_relay": round(speed["daemons"] / speed["relay"], 3),
                "src_daemon_cpu_s_per_gib": round(statistics.median(
                    r.src_daemon_cpu_s / g for r, g in zip(daemons, gib, strict=True)), 3),
                "dst_daemon_cpu_s_per_gib": round(statistics.median(
                    r.dst_daemon_cpu_s / g for r, g in zip(daemons, gib, strict=True)), 3),
                "src_daemon_rss_growth_mib": round(statistics.median(
                    r.src_daemon_rss_growth_mib for r in daemons), 1),
                "filter_table_mib": round(daemons[0].filter_table_bytes / 2**20, 2),
            }
            for v, rs in runs.items():
                out[size][f"{_key(v)}_machine_cpu_s_per_gib"] = round(statistics.median(
                    r.machine_cpu_s / (r.qemu_bytes / 2**30) for r in rs), 2)
                out[size][f"{_key(v)}_busy_cores"] = round(statistics.median(
                    r.machine_busy_cores for r in rs), 2)
        return out

    def summary(self) -> dict[str, Any]:
        sizes = self.by_size()
        out: dict[str, Any] = {"by_size": sizes}
        if sizes:
            largest = max(sizes)
            out["throughput_ratio"] = sizes[largest]["throughput_ratio"]
            out["relay_ratio"] = sizes[largest]["relay_ratio"]
            out["relay_unix_ratio"] = sizes[largest]["relay_unix_ratio"]
            out["daemons_vs_relay"] = sizes[largest]["daemons_vs_relay"]
            out["throughput_ratio_target"] = TARGET_RATIO
            out["throughput_ratio_met"] = out["throughput_ratio"] >= TARGET_RATIO
            out["filter_table_mib_per_gib"] = round(
                sizes[largest]["filter_table_mib"] / (largest / 1024), 2)
        if len(sizes) >= 2:
            small, large = min(sizes), max(sizes)
            slope = ((sizes[large]["src_daemon_rss_growth_mib"]
                      - sizes[small]["src_daemon_rss_growth_mib"]) / ((large - small) / 1024))
            out["daemon_rss_mib_per_gib"] = round(slope, 2)
            out["daemon_rss_mib_per_gib_target"] = TARGET_MIB_PER_GIB
            out["daemon_rss_mib_per_gib_met"] = slope <= TARGET_MIB_PER_GIB
        warm = [r for r in self.runs if r.warmup and r.ok]
        if warm:
            out["cold_rss_growth_mib"] = warm[0].src_daemon_rss_growth_mib
        out["all_memory_intact"] = all(r.memory_intact for r in self.runs if r.ok)
        return out


class _RssPeak:
    """Samples a process's RSS in the background; ``stop`` returns the peak growth (MiB)."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.base = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(RSS_SAMPLE_S):
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return

    def stop(self) -> float:
        self._stop.set()
        self._thread.join(5)
        return (self.peak - self.base) / 2**20


def _cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def _machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (all cores; idle and I/O wait excluded)."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def _key(variant: str) -> str:
    """A variant's name in the figures' keys."""
    return variant.replace("-", "_")


def _migrate_libvirt(guests: Guests, vm: str, run: ProxyRun) -> JobStats:
    """A migration by libvirt alone: QEMU to QEMU, or through a bare relay pair."""
    if run.variant == "direct":
        return guests.migrate(vm, run.target, timeout_s=MIGRATION_TIMEOUT_S).stats
    layout = guests.lab.layout
    with relay_pair(guests.lab, layout.host_named(run.source), layout.host_named(run.target),
                    unix=run.variant == "relay-unix") as uri:
        return guests.migrate(vm, run.target, timeout_s=MIGRATION_TIMEOUT_S,
                              through=uri).stats


def _migrate_once(guests: Guests, vm: str, run: ProxyRun) -> None:
    lab = guests.lab
    src_pid = daemon_pid(lab.layout.host_named(run.source))
    dst_pid = daemon_pid(lab.layout.host_named(run.target))
    if src_pid is None or dst_pid is None:
        raise PerfplusError("a lab host's Perf+ daemon is not running")
    cpu0 = (_cpu_s(src_pid), _cpu_s(dst_pid))
    busy0, wall0 = _machine_busy_s(), time.monotonic()
    rss = _RssPeak(src_pid) if run.variant == "daemons" else None
    try:
        if run.variant != "daemons":
            try:
                stats = _migrate_libvirt(guests, vm, run)
            except PerfplusError as exc:
                run.error = str(exc)
                return
            run.qemu_bytes, run.time_s = stats.data_processed, stats.time_elapsed_ms / 1000
            run.downtime_ms = stats.downtime_ms
        else:
            answer, run.error = daemon_migrate(lab, vm, run.source, run.target,
                                               filter_mode="perfplus",
                                               timeout_s=MIGRATION_TIMEOUT_S)
            if answer is None:
                return
            stats = answer.get("stats") or {}
            run.qemu_bytes = int(stats.get("data_processed") or 0)
            run.time_s = int(stats.get("time_elapsed_ms") or 0) / 1000
            run.downtime_ms = stats.get("downtime_ms")
            run.wire_bytes = int((answer.get("relay") or {}).get("bytes_out") or 0)
            run.filter_table_bytes = int((answer.get("perfplus") or {}).get("table_bytes") or 0)
    finally:
        if rss is not None:
            run.src_daemon_rss_growth_mib = round(rss.stop(), 1)
    run.machine_cpu_s = round(_machine_busy_s() - busy0, 3)
    run.machine_busy_cores = round(run.machine_cpu_s / (time.monotonic() - wall0), 2)
    run.src_daemon_cpu_s = round(_cpu_s(src_pid) - cpu0[0], 3)
    run.dst_daemon_cpu_s = round(_cpu_s(dst_pid) - cpu0[1], 3)
    run.ok = run.time_s > 0 and run.qemu_bytes > 0
    if run.ok:
        run.throughput_mib_s = round(run.qemu_bytes / 2**20 / run.time_s, 1)
    elif not run.error:
        run.error = "libvirt reported no figures for the migration"


def _migrate(guests: Guests, vm: str, size: int, variant: str, *, warmup: bool = False
             ) -> ProxyRun:
    source = guests.where(vm).name
    run = ProxyRun(size, variant, source, "h2" if source == "h1" else "h1", warmup=warmup)
    _migrate_once(guests, vm, run)
    if run.ok:
        reply = guests.console(vm).command("v", r"^VERIFY", timeout=120)
        run.memory_intact = reply.startswith("VERIFY OK")
    return run


def run_proxy_bench(say: Callable[[str], None], *, memory_mib: tuple[int, ...] = (512, 4096),
                    rounds: int = 5, name: str = "benchproxy") -> ProxyBench:
    """Measure both variants ``rounds`` times per guest size on a two-host lab (removed
    afterwards)."""
    if rounds < 1:
        raise UsageError("--rounds must be at least 1")
    if any(m < 256 for m in memory_mib):
        raise UsageError("guests need at least 256 MiB")
    bench = ProxyBench(tuple(sorted(set(memory_mib))), rounds)
    lab = Lab(LabLayout.create(name, 2), say=say)
    lab.up()
    guests = Guests(lab)
    try:
        for size in bench.memory_mib:
            vm = f"bp{size}"
            fill = filled_mib(size)
            workload = f"-m {fill} -p -i 0"
            say(f"{size} MiB guest filling {fill} MiB with random content, then idle")
            with guests.temporary(vm, "h1", size, workload=workload, say=say):
                if not bench.runs:
                    bench.runs.append(_migrate(guests, vm, size, "daemons", warmup=True))
                    say(_row(bench.runs[-1]))
                for _, variant in in_turns(VARIANTS, rounds):
                    bench.runs.append(_migrate(guests, vm, size, variant))
                    say(_row(bench.runs[-1]))
    finally:
        lab.down()
    return bench


def filled_mib(memory_mib: int) -> int:
    """How much of a guest's RAM its workload fills: all but what the guest system needs."""
    return memory_mib - max(memory_mib // 4, GUEST_SYSTEM_MIB)


def _row(r: ProxyRun) -> str:
    tag = f"{r.memory_mib:5} MiB {r.variant + (' (warm-up)' if r.warmup else ''):18}"
    if not r.ok:
        return f"{tag} {r.source}->{r.target} FAILED: {r.error}"
    daemons = (f"  daemons cpu {r.src_daemon_cpu_s:5.2f}/{r.dst_daemon_cpu_s:5.2f} s, "
               f"rss +{r.src_daemon_rss_growth_mib:5.1f} MiB" if r.variant == "daemons" else "")
    return (f"{tag} {r.source}->{r.target} {r.qemu_bytes / 2**20:7.1f} MiB in {r.time_s:6.2f} s "
            f"= {r.throughput_mib_s:7.1f} MiB/s, downtime {r.downtime_ms} ms, machine "
            f"{r.machine_busy_cores:.2f} cores busy, memory "
            f"{'intact' if r.memory_intact else 'BAD'}{daemons}")


def format_table(bench: ProxyBench) -> str:
    """Two tables (throughput and machine CPU per variant; the daemons' own costs), then the
    summary."""
    head = (f"{'guest':>9} {'direct':>12} {'relay':>12} {'relay-unix':>12} {'daemons':>12} "
            f"{'daemons/direct':>15} {'relay/direct':>13} {'unix/direct':>12} "
            f"{'daemons/relay':>14}   machine CPU-s/GiB (busy cores)")
    lines = [head, "-" * len(head)]
    sizes = bench.by_size()
    for size, s in sizes.items():
        cpu = "  ".join(f"{s[f'{_key(v)}_machine_cpu_s_per_gib']:.2f} "
                        f"({s[f'{_key(v)}_busy_cores']:.2f})" for v in VARIANTS)
        speeds = " ".join(f"{s[f'{_key(v)}_mib_s']:7.1f} MiB/s" for v in VARIANTS)
        lines.append(
            f"{size:5} MiB {speeds} {s['throughput_ratio']:15.3f} {s['relay_ratio']:13.3f} "
            f"{s['relay_unix_ratio']:12.3f} {s['daemons_vs_relay']:14.3f}   {cpu}")
    head = (f"{'guest':>9} {'src daemon CPU':>15} {'dst daemon CPU':>15} {'src RSS growth':>15} "
            f"{'tag tables':>11}")
    lines += ["", head, "-" * len(head)]
    for size, s in sizes.items():
        lines.append(
            f"{size:5} MiB {s['src_daemon_cpu_s_per_gib']:9.2f} s/GiB "
            f"{s['dst_daemon_cpu_s_per_gib']:9.2f} s/GiB "
            f"{s['src_daemon_rss_growth_mib']:11.1f} MiB "
            f"{s['filter_table_mib']:7.2f} MiB")
    lines.append("")
    lines += [f"{k:30} {v}" for k, v in bench.summary().items() if k != "by_size"]
    return "\n".join(lines)
