"""Where the Perf+ daemon listens and where its key lives, unless configured otherwise
(a module of its own so that the agent's meta-data does not import the daemon)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEFAULT_KEY_FILE", "DEFAULT_PORT"]

DEFAULT_PORT = 49690
DEFAULT_KEY_FILE = Path("/etc/perfplus/cluster.key")
