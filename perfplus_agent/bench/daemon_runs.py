"""What the migration benchmarks share: one migration of a lab guest through the lab hosts'
Perf+ daemons, as an operator runs it (``perfplus daemon migrate`` on the source host), and
the order in which the variants take turns."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from perfplus_agent.lab.lab import Lab
from perfplus_agent.lab.layout import MIG_SUFFIX

__all__ = ["daemon_migrate", "in_turns"]


def daemon_migrate(lab: Lab, vm: str, source: str, dest: str, *, filter_mode: str,
                   timeout_s: float, xbzrle_cache_mib: int = 0,
                   stop_copy_after: int = 0) -> tuple[dict[str, Any] | None, str]:
    """Migrate ``vm`` from ``source`` to ``dest`` over the migration network; the source
    daemon's answer and "", or None and the error it printed."""
    argv = [sys.executable, "-m", "perfplus_agent.cli", "daemon", "migrate", vm,
            "--from", source, "--to", dest, "--key-file", str(lab.layout.cluster_key),
            "--suffix", MIG_SUFFIX, "--filter", filter_mode,
            "--xbzrle-cache", str(xbzrle_cache_mib),
            "--stop-copy-after", str(stop_copy_after), "--timeout", str(timeout_s)]
    res = lab.run_in(source, argv, timeout=timeout_s + 120, check=False)
    if res.returncode == 0:
        return json.loads(res.stdout.strip().splitlines()[-1]), ""
    return None, (res.stderr.strip().splitlines() or ["failed"])[-1]


def in_turns(variants: Sequence[str], rounds: int) -> Iterator[tuple[int, str]]:
    """(round, variant): every variant once per round, in reverse order every other round, so
    that no variant always runs first (or always in the same direction)."""
    for i in range(rounds):
        for variant in variants if i % 2 == 0 else variants[::-1]:
            yield i, variant
