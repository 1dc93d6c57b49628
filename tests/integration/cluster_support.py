"""Driving the lab's Pacemaker cluster from tests: commands in a node, waiting for moves."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from perfplus_agent.lab.cluster_status import cluster_view
from perfplus_agent.lab.guest_xml import guest_xml
from perfplus_agent.lab.guests import Guests

REPO = Path(__file__).resolve().parents[2]


def in_node(guests: Guests, host: str, argv: list[str], env: dict[str, str] | None = None,
            timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` inside cluster node ``host``; raise with its output when it fails."""
    res = guests.lab.run_in(host, argv, env=env, timeout=timeout, check=False)
    if res.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} on {host} exited {res.returncode}: "
                             f"{res.stdout}{res.stderr}")
    return res


def recipe(guests: Guests, host: str, name: str, env: dict[str, str]) -> None:
    """Run one of the repository's crm/ recipes, as it is, inside ``host``."""
    in_node(guests, host, ["sh", str(REPO / "crm" / name)], env)


def vm_config(guests: Guests, name: str, workload: str = "-m 64 -r 1000 -s 0.5 -i 0.2") -> str:
    """Record a lab guest and write its XML to the lab's shared directory (seen by all)."""
    spec = guests.prepare(name, 256, workload=workload)
    path = guests.layout.shared_dir / f"{name}.xml"
    path.write_text(guest_xml(spec))
    return str(path)


def active_on(guests: Guests, resource: str, via: str = "h1") -> tuple[str, ...]:
    view = cluster_view(guests.lab.init_pid(guests.layout.host_named(via)))
    return view.resources.get(resource, ()) if view else ()


def settle(guests: Guests, via: str = "h1", timeout: float = 90.0) -> None:
    """Wait until the cluster has nothing left to do."""
    in_node(guests, via, ["crm_resource", "--wait", f"--timeout={int(timeout)}s"],
            timeout=timeout + 30)


def wait_active(guests: Guests, resource: str, predicate, timeout: float = 90.0,
                via: str = "h1") -> tuple[str, ...]:
    deadline = time.monotonic() + timeout
    where: tuple[str, ...] = ()
    while time.monotonic() < deadline:
        where = active_on(guests, resource, via)
        if predicate(where):
            return where
        time.sleep(0.5)
    raise AssertionError(f"{resource} is active on {where} after {timeout:.0f} s\n"
                         + diagnose(guests, resource, via))


def diagnose(guests: Guests, resource: str, via: str = "h1", lines: int = 40) -> str:
    """What the cluster and every node's log say about ``resource``: for failure messages."""
    status = guests.lab.run_in(via, ["crm_mon", "-1", "-r", "-f"], timeout=30, check=False)
    parts = [f"crm_mon on {via}:\n{status.stdout}{status.stderr}"]
    for host in guests.layout.all_hosts():
        log = host.path("/var/log/pacemaker/pacemaker.log")
        text = log.read_text(errors="replace") if log.exists() else ""
        hits = [line for line in text.splitlines() if resource in line][-lines:]
        parts.append(f"{host.name} pacemaker.log ({resource}):\n" + "\n".join(hits))
    return "\n".join(parts)
