"""Asking a node's Perf+ migration daemon to live-migrate one of its domains.

The daemon of the node that runs the domain does the work (proxy, filter, libvirt); the
caller — the agent on either node, or an administrator — only sends the request and waits
for the answer. A failed migration leaves the domain running where it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfplus_agent.errors import PerfplusError

__all__ = ["DaemonMigration", "DaemonMigrationError", "migrate_via_daemon"]

ANSWER_MARGIN_S = 30.0  # the daemon answers after its own migration timeout


class DaemonMigrationError(PerfplusError):
    """The daemon could not be asked, or the migration failed (the domain stays put)."""


@dataclass(frozen=True)
class DaemonMigration:
    """What the source daemon reported about a finished migration."""

    answer: dict[str, Any]

    @property
    def stats(self) -> dict[str, Any]:
        return self.answer.get("stats") or {}

    @property
    def perfplus(self) -> dict[str, Any] | None:
        return self.answer.get("perfplus")

    def summary(self) -> str:
        """One line for the log: time, downtime and what the filter saved."""
        s = self.stats
        parts = [f"{self.answer.get('wall_s', 0):.2f} s"]
        if s.get("downtime_ms") is not None:
            parts.append(f"downtime {s['downtime_ms']} ms")
        pp = self.perfplus
        if pp:
            t = pp.get("totals", {})
            parts.append(f"Perf+ {pp.get('mode')}: {t.get('pages_dropped', 0)} of "
                         f"{t.get('pages_seen', 0)} pages unchanged and not resent")
        return ", ".join(parts)


def migrate_via_daemon(source_address: str, key_file: Path, *, domain: str, dest_node: str,
                       dest_address: str, dest_uri: str, timeout_s: float,
                       bandwidth_mib: int = 0, channels: int = 0,
                       filter_mode: str = "perfplus", xbzrle_cache_mib: int = 0,
                       stop_copy_after: int = 0) -> DaemonMigration:
    """Have the daemon at ``source_address`` migrate ``domain`` to ``dest_node``
    (``xbzrle_cache_mib`` and ``stop_copy_after`` are for comparisons, see protocol.py)."""
    from perfplus_agent.daemon.client import DaemonError, request  # noqa: PLC0415 (heavy)
    from perfplus_agent.daemon.keys import load_key  # noqa: PLC0415
    try:
        key = load_key(key_file)
    except PerfplusError as exc:
        raise DaemonMigrationError(f"cannot read the Perf+ cluster key: {exc}") from None
    message = {"op": "migrate", "domain": domain, "dest_node": dest_node,
               "dest_address": dest_address, "dest_uri": dest_uri,
               "timeout_s": max(1.0, timeout_s), "bandwidth_mib": bandwidth_mib,
               "channels": channels, "filter": filter_mode,
               "xbzrle_cache_mib": xbzrle_cache_mib, "stop_copy_after": stop_copy_after}
    try:
        answer = request(source_address, key, message, timeout=timeout_s + ANSWER_MARGIN_S)
    except DaemonError as exc:
        raise DaemonMigrationError(f"migrating {domain} to {dest_node} through the Perf+ "
                                   f"{exc}") from None
    if not answer.get("ok"):
        raise DaemonMigrationError(f"the Perf+ daemon at {source_address} could not migrate "
                                   f"{domain} to {dest_node}: {answer.get('error')}")
    return DaemonMigration(answer)
