"""``perfplus bench ...``: measured figures, written as a table and optionally as JSON."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click

from perfplus_agent.bench.agent_bench import run_agent_bench
from perfplus_agent.bench.filter_bench import format_table as format_filter_table
from perfplus_agent.bench.filter_bench import run_filter_bench
from perfplus_agent.bench.fuzz_targets import run_fuzz
from perfplus_agent.bench.lab_bench import run_lab_bench
from perfplus_agent.bench.migrate_bench import SCENARIOS, as_json, format_table, run_migrate_bench
from perfplus_agent.bench.proxy_bench import format_table as format_proxy_table
from perfplus_agent.bench.proxy_bench import run_proxy_bench
from perfplus_agent.cli.lab import method_option
from perfplus_agent.cli.reporting import json_option, write_json
from perfplus_agent.lab.demo import run_demo
from perfplus_agent.lab.maintenance import format_report

__all__ = ["bench"]


def _say(msg: str) -> None:
    click.echo(msg, err=True)


def _table(summary: dict[str, dict[str, float]]) -> str:
    rows = [f"{'figure':26} {'min':>9} {'median':>9} {'max':>9} {'target':>8}  met"]
    for key, s in summary.items():
        target = f"< {s['target']:g}" if "target" in s else ""
        met = ("yes" if s["met"] else "NO") if "met" in s else ""
        rows.append(f"{key:26} {s['min']:9.2f} {s['median']:9.2f} {s['max']:9.2f} "
                    f"{target:>8}  {met}")
    return "\n".join(rows)


@click.group()
def bench() -> None:
    """Benchmarks that produce the figures quoted in the docs."""


@bench.command(name="lab")
@click.option("--rounds", default=3, show_default=True, help="Repetitions of each measurement.")
@json_option
def bench_lab(rounds: int, json_path: Path | None) -> None:
    """Lab up (3 hosts), guest boot to workload, 256 MiB idle-guest migration."""
    result = run_lab_bench(_say, rounds=rounds)
    _report("lab", f"{rounds} rounds, accelerator {result.accel}", result.summary(),
            asdict(result), json_path)


def _report(name: str, title: str, summary: dict, samples: dict, json_path: Path | None) -> None:
    """Print a benchmark's summary table and write everything as JSON when asked."""
    click.echo(f"perfplus bench {name}: {title}")
    click.echo(_table(summary))
    write_json(json_path, name, summary, samples)


@bench.command(name="agent")
@click.option("--rounds", default=20, show_default=True, help="Runs of each action.")
@json_option
def bench_agent(rounds: int, json_path: Path | None) -> None:
    """The agent's own time per action (meta-data, monitor, probe), libvirt excluded."""
    result = run_agent_bench(_say, rounds=rounds)
    _report("agent", f"{rounds} runs per action (ms, process start included)",
            result.summary(), asdict(result), json_path)


@bench.command(name="maintenance")
@click.option("--vms", default=8, show_default=True, help="Guests to evacuate from h1.")
@click.option("--probe-hz", default=1000.0, show_default=True, help="Client ping rate.")
@method_option
@json_option
def bench_maintenance(vms: int, probe_hz: float, method: str, json_path: Path | None) -> None:
    """Node maintenance under Pacemaker: evacuation time, per-guest downtime and gap."""
    report = run_demo(_say, vms=vms, name="benchmaint", probe_hz=probe_hz, method=method)
    click.echo(format_report(report))
    summary = {"evacuation_s": report.evacuation_s, "worst_downtime_ms": report.worst_downtime_ms,
               "worst_service_gap_ms": report.worst_gap_ms, "all_live": report.all_live,
               "target_worst_downtime_ms": 300}
    write_json(json_path, "maintenance", summary, asdict(report))


@bench.command(name="filter")
@click.option("--rounds", default=3, show_default=True, help="Repetitions of each measurement.")
@click.option("--large-mib", default=1024, show_default=True,
              help="Size of the memory-bound working set.")
@json_option
def bench_filter(rounds: int, large_mib: int, json_path: Path | None) -> None:
    """Perf+ filter GB/s per core per algorithm (hot and large sets), memcpy alongside."""
    result = run_filter_bench(_say, rounds=rounds, large_mib=large_mib)
    click.echo(f"perfplus bench filter: {rounds} rounds, HighwayHash {result.highwayhash_target}, "
               f"hot {result.hot_bytes // 1024} KiB, large {result.large_bytes >> 20} MiB")
    click.echo(format_filter_table(result))
    write_json(json_path, "filter", result.summary(), asdict(result))


@bench.command(name="fuzz")
@click.option("--runs", default=1_000_000, show_default=True, help="Inputs per target.")
@json_option
def bench_fuzz(runs: int, json_path: Path | None) -> None:
    """Fuzz the Perf+ C core (RamRewriter.feed, filter_multifd): executions and crashes."""
    results = run_fuzz(_say, runs=runs)
    click.echo(f"perfplus bench fuzz: {runs} runs per target")
    click.echo(f"{'target':10} {'driver':8} {'executions':>11} {'crashes':>8} {'seconds':>8}")
    for r in results:
        click.echo(f"{r.target:10} {r.driver:8} {r.executions:11} {r.crashes:8} {r.seconds:8}")
        if r.detail:
            click.echo(r.detail)
    summary = {r.target: {"executions": r.executions, "crashes": r.crashes} for r in results}
    write_json(json_path, "fuzz", summary, {"runs": [asdict(r) for r in results]})
    if any(r.crashes for r in results):
        raise SystemExit(1)


@bench.command(name="migrate")
@click.option("--link", default="32mibps", show_default=True,
              help="Migration link rate (tc), e.g. 32mibps or 100mbit.")
@click.option("--memory", "memory_mib", default=256, show_default=True, help="Guest MiB.")
@click.option("--rate", default=3000, show_default=True,
              help="Guest page writes per second (paper, converge, random scenarios).")
@click.option("--hard-rate", default=30000, show_default=True,
              help="Page writes per second of the 'hard' scenario (90% same content).")
@click.option("--scenario", "scenarios", multiple=True, type=click.Choice(list(SCENARIOS)),
              help="Run only these scenarios (default: all).")
@click.option("--rounds", default=1, show_default=True, type=click.IntRange(min=1),
              help="Migrations of each variant per scenario; ratios are medians over rounds.")
@json_option
def bench_migrate(*, link: str, memory_mib: int, rate: int, hard_rate: int,
                  scenarios: tuple[str, ...], rounds: int, json_path: Path | None) -> None:
    """Perf+ against plain pre-copy and XBZRLE (64 MiB and full cache) on a shaped link."""
    result = run_migrate_bench(_say, link=link, memory_mib=memory_mib, rate=rate,
                               hard_rate=hard_rate, scenarios=scenarios or tuple(SCENARIOS),
                               rounds=rounds)
    click.echo(f"perfplus bench migrate: link {link}, guest {memory_mib} MiB, "
               f"{rate} writes/s ({hard_rate} in 'hard'), {rounds} round(s)")
    click.echo(format_table(result))
    write_json(json_path, "migrate", result.summary(), as_json(result))


@bench.command(name="proxy")
@click.option("--memory", "memory_mib", multiple=True, type=click.IntRange(min=256),
              default=(512, 4096), show_default=True,
              help="Guest MiB; give two sizes (or more) for the memory-per-GiB slope.")
@click.option("--rounds", default=5, show_default=True, type=click.IntRange(min=1),
              help="Migrations of each variant per guest size.")
@json_option
def bench_proxy(memory_mib: tuple[int, ...], rounds: int, json_path: Path | None) -> None:
    """Daemon-pair throughput against direct QEMU-to-QEMU (and a bare kernel relay pair, the
    ceiling of any proxy here) on an unshaped link; daemon CPU and memory per migrated GiB."""
    result = run_proxy_bench(_say, memory_mib=memory_mib, rounds=rounds)
    click.echo(f"perfplus bench proxy: unshaped link, guests of "
               f"{', '.join(map(str, result.memory_mib))} MiB (filled, idle), "
               f"{rounds} rounds, medians")
    click.echo(format_proxy_table(result))
    write_json(json_path, "proxy", result.summary(), asdict(result))
