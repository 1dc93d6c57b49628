"""Writing a command's figures as JSON (``--json FILE``), the same way for every command."""

from __future__ import annotations

import json
from pathlib import Path

import click

from perfplus_agent.bench.environment import environment

__all__ = ["json_option", "write_json"]

json_option = click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
                           help="Also write every figure and the environment to this file.")


def write_json(path: Path | None, name: str, summary: dict, samples: dict) -> None:
    """Write ``summary`` and ``samples`` of run ``name`` with the environment to ``path``."""
    if path:
        path.write_text(json.dumps({"benchmark": name, "environment": environment(),
                                    "summary": summary, "samples": samples}, indent=2) + "\n")
        click.echo(f"figures written to {path}", err=True)
