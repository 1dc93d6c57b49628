"""What Pacemaker says about the lab's cluster, asked from inside a host."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass

from lxml import etree

from perfplus_agent.errors import PerfplusError
from perfplus_agent.lab.hosts import enter_argv

__all__ = ["ClusterView", "cluster_view", "wait_online"]


@dataclass(frozen=True)
class ClusterView:
    """Online nodes, the DC, and where each resource is active."""

    online: tuple[str, ...]
    dc: str | None
    resources: dict[str, tuple[str, ...]]  # resource id -> nodes it is active on


def cluster_view(init_pid: int, timeout: float = 15.0) -> ClusterView | None:
    """Pacemaker's status as one host sees it (None when it cannot tell)."""
    try:
        res = subprocess.run(enter_argv(init_pid, ["crm_mon", "-1", "--output-as=xml"]),
                             capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return None
    if res.returncode != 0:
        return None
    try:
        root = etree.fromstring(res.stdout)
    except etree.XMLSyntaxError:
        return None
    online = tuple(n.get("name") for n in root.iter("node")
                   if n.get("online") == "true" and n.getparent().tag == "nodes")
    dc_el = root.find("summary/current_dc")
    dc = dc_el.get("name") if dc_el is not None and dc_el.get("present") == "true" else None
    resources: dict[str, tuple[str, ...]] = {}
    for rsc in root.iter("resource"):
        nodes = tuple(n.get("name") for n in rsc.iter("node"))
        if rsc.get("active") == "true":
            resources[rsc.get("id")] = nodes
        else:
            resources.setdefault(rsc.get("id"), ())
    return ClusterView(online, dc, resources)


def wait_online(init_pid: int, nodes: list[str], timeout: float = 60.0) -> ClusterView:
    """Wait until every node in ``nodes`` is online and a DC is elected."""
    deadline = time.monotonic() + timeout
    view = None
    while time.monotonic() < deadline:
        view = cluster_view(init_pid)
        if view and view.dc and set(nodes) <= set(view.online):
            return view
        time.sleep(0.5)
    seen = f"online {', '.join(view.online) or 'none'}, DC {view.dc}" if view else "no answer"
    raise PerfplusError(f"the cluster did not come up within {timeout:.0f} s ({seen})")
