"""What the agent remembers between actions on this node (under ``HA_RSCTMP``, which is
emptied at boot): the domain's name, so that a probe or a stop can still find the domain
when the configuration file has become unreadable, and the utilization last reported."""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["StateFile"]


class StateFile:
    """A small JSON file per resource instance."""

    def __init__(self, rsctmp: str, instance: str) -> None:
        safe = instance.replace("/", "_")
        self.path = Path(rsctmp) / f"perfplus-VirtualDomain-{safe}.json"

    def load(self) -> dict[str, object]:
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def update(self, **values: object) -> None:
        data = self.load()
        if all(data.get(k) == v for k, v in values.items()):
            return
        data.update(values)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data))
            os.replace(tmp, self.path)
        except OSError:
            pass  # a cache: losing it only costs the fallback

    def domain_name(self) -> str | None:
        name = self.load().get("domain")
        return name if isinstance(name, str) and name else None

    def forget(self) -> None:
        self.path.unlink(missing_ok=True)
