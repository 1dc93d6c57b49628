"""``perfplus bench ...``: measured figures, written as a table and optionally as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from perfplus_agent.bench.environment import environment
from perfplus_agent.bench.lab_bench import run_lab_bench

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


json_option = click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
                           help="Also write every figure and the environment to this file.")


@click.group()
def bench() -> None:
    """Benchmarks that produce the figures quoted in the docs."""


@bench.command(name="lab")
@click.option("--rounds", default=3, show_default=True, help="Repetitions of each measurement.")
@json_option
def bench_lab(rounds: int, json_path: Path | None) -> None:
    """Lab up (3 hosts), guest boot to workload, 256 MiB idle-guest migration."""
    result = run_lab_bench(_say, rounds=rounds)
    summary = result.summary()
    click.echo(f"perfplus bench lab: {rounds} rounds, accelerator {result.accel}")
    click.echo(_table(summary))
    if json_path:
        json_path.write_text(json.dumps({"benchmark": "lab", "environment": environment(),
                                         "summary": summary, "samples": asdict(result)},
                                        indent=2) + "\n")
        _say(f"figures written to {json_path}")
