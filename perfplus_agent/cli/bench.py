"""``perfplus bench ...``: measured figures, written as a table and optionally as JSON."""

from __future__ import annotations

import click

__all__ = ["bench"]


@click.group()
def bench() -> None:
    """Benchmarks that produce the figures quoted in the docs."""
