"""What the cluster stack says: its member nodes, this node's name, who was fenced, and
where utilization attributes go. Every question is a bounded call of a Pacemaker tool."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from lxml import etree

from perfplus_agent.errors import CommandError
from perfplus_agent.proc import run

__all__ = ["Cluster", "ClusterNode"]

TOOL_TIMEOUT = 10.0


@dataclass(frozen=True)
class ClusterNode:
    name: str
    member: bool


class Cluster:
    """Pacemaker's view, or nothing when no cluster runs here (the agent run by hand)."""

    def nodes(self) -> list[ClusterNode] | None:
        """Every configured node with its membership; None without a running cluster."""
        try:
            out = run(["crm_node", "-l"], timeout=TOOL_TIMEOUT).stdout
        except CommandError:
            return None
        nodes = []
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 3:
                nodes.append(ClusterNode(parts[1], parts[2] == "member"))
        return nodes or None

    def local_name(self) -> str:
        try:
            return run(["crm_node", "-n"], timeout=TOOL_TIMEOUT).stdout.strip()
        except CommandError:
            return socket.gethostname()

    def was_fenced(self, node: str) -> bool:
        """Whether the latest fencing action against ``node`` succeeded and the node has not
        rejoined since, i.e. it cannot be running anything."""
        try:
            out = run(["stonith_admin", "--history", node, "--output-as", "xml"],
                      timeout=TOOL_TIMEOUT).stdout
        except CommandError:
            return False
        try:
            root = etree.fromstring(out.encode())
        except etree.XMLSyntaxError:
            return False
        events = [e for e in root.iter("fence_event") if e.get("target") == node]
        if not events:
            return False
        latest = max(events, key=lambda e: e.get("completed", ""))
        if latest.get("status") != "success" or latest.get("action") == "on":
            return False
        members = {n.name: n.member for n in self.nodes() or []}
        return not members.get(node, False)

    def set_utilization(self, resource: str, attribute: str, value: str | None) -> None:
        """Set (or delete, with None) a utilization attribute of ``resource``."""
        if value is None:
            argv = ["crm_resource", "-r", resource, "-z", "-d", attribute]
        else:
            argv = ["crm_resource", "-r", resource, "-z", "-p", attribute, "-v", value]
        run(argv, timeout=TOOL_TIMEOUT, check=False)
