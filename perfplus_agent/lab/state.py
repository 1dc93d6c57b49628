"""The lab's record of what it built, written before each step so a crash leaves a trail.

``lab down`` trusts this record, and also sweeps namespaces that carry the lab's prefix, so
it removes everything even after a ``kill -9`` of the process that was building the lab.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from perfplus_agent.errors import UsageError

__all__ = ["HostRecord", "LabRecord", "lab_lock", "load_record", "save_record"]


@dataclass
class HostRecord:
    """One host: the host-side PID of its init (PID 1 of its PID namespace)."""

    name: str
    netns: str
    init_pid: int | None = None


@dataclass
class LabRecord:
    """Everything ``lab down`` needs, and what ``lab status`` reports."""

    name: str
    hosts: int
    phase: str = "building"  # building -> up -> tearing-down
    created: float = field(default_factory=time.time)
    migration_link: str | None = None
    accel: str | None = None
    cluster: bool = False
    switch_pid: int | None = None
    namespaces: list[str] = field(default_factory=list)
    host_records: list[HostRecord] = field(default_factory=list)

    def host(self, name: str) -> HostRecord | None:
        return next((h for h in self.host_records if h.name == name), None)


def save_record(path: Path, record: LabRecord) -> None:
    """Write the record atomically (a crash never leaves half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(record), indent=2) + "\n")
    os.replace(tmp, path)


def load_record(path: Path) -> LabRecord | None:
    """Read the record, or None when there is none; UsageError if it is unreadable."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"lab state {path} is unreadable ({exc}); run 'perfplus lab down'"
        ) from None
    hosts = [HostRecord(**h) for h in data.pop("host_records", [])]
    return LabRecord(**data, host_records=hosts)


@contextlib.contextmanager
def lab_lock(state_dir: Path, timeout: float = 120.0) -> Iterator[None]:
    """Serialise commands that change one lab (up, down, vm create, ...)."""
    state_dir.parent.mkdir(parents=True, exist_ok=True)
    lock_path = state_dir.parent / f".{state_dir.name}.lock"
    with open(lock_path, "w") as fh:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise UsageError(
                        f"another perfplus command holds the lab lock {lock_path}"
                    ) from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
