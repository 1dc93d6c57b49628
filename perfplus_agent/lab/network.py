"""The lab's two networks, built with iproute2 inside the lab's own namespaces.

* LAN: the guests' L2 segment. A bridge ``lan`` in the switch namespace joins every host's
  ``eth0`` (itself a port of the host's ``br0``, where guests' taps attach) and the client
  namespace.
* Migration network: a bridge ``mig`` joins every host's ``mig0``. Its speed can be shaped
  with a token bucket on each ``mig0`` (the sending side of a migration), and the link of one
  host can be cut and healed.
"""

from __future__ import annotations

import re

from perfplus_agent.errors import UsageError
from perfplus_agent.lab import netns
from perfplus_agent.lab.layout import HostLayout, LabLayout
from perfplus_agent.proc import run

__all__ = ["build", "parse_rate", "set_link_state", "shape_host_link", "shape_migration_link"]

_RATE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*(bit|kbit|mbit|gbit|bps|kibps|mibps|gibps)$", re.I)
_RATE_FACTORS = {
    "bit": 1 / 8,
    "kbit": 1000 / 8,
    "mbit": 1e6 / 8,
    "gbit": 1e9 / 8,
    "bps": 1,
    "kibps": 1024,
    "mibps": 1024**2,
    "gibps": 1024**3,
}


def parse_rate(text: str) -> int:
    """Bytes per second from a tc-style rate (``1gbit``, ``32mibps``); UsageError if bad."""
    m = _RATE_RE.match(text.strip())
    if not m:
        raise UsageError(
            f"bad link rate {text!r}: use e.g. 100mbit, 1gbit or 32mibps (bytes per second)"
        )
    value = float(m.group(1)) * _RATE_FACTORS[m.group(2).lower()]
    if value < 125_000:
        raise UsageError(f"link rate {text!r} is below 1mbit, too slow for a migration")
    return int(value)


def _ip(ns: str, *args: str) -> None:
    run(["ip", "-n", ns, *args])


def _bridge(ns: str, name: str) -> None:
    _ip(ns, "link", "add", name, "type", "bridge", "forward_delay", "0", "stp_state", "0")
    _ip(ns, "link", "set", name, "up")


def _veth(ns: str, ifname: str, switch_ns: str, port: str, bridge: str) -> None:
    """A cable from ``ifname`` in ``ns`` to ``port`` of ``bridge`` in the switch."""
    _ip(ns, "link", "add", ifname, "type", "veth", "peer", "name", port, "netns", switch_ns)
    _ip(switch_ns, "link", "set", port, "master", bridge)
    _ip(switch_ns, "link", "set", port, "up")


def build_switch(lab: LabLayout) -> None:
    _bridge(lab.switch_netns, "lan")
    _bridge(lab.switch_netns, "mig")


def build_host(lab: LabLayout, host: HostLayout) -> None:
    """Wire one host: ``br0`` (with ``eth0``) on the LAN, ``mig0`` on the migration network."""
    ns, sw = host.netns, lab.switch_netns
    _veth(ns, "eth0", sw, f"{host.name}-lan", "lan")
    _veth(ns, "mig0", sw, f"{host.name}-mig", "mig")
    _bridge(ns, "br0")
    _ip(ns, "link", "set", "eth0", "master", "br0")
    _ip(ns, "link", "set", "eth0", "up")
    _ip(ns, "addr", "add", f"{host.lan_addr}/24", "dev", "br0")
    _ip(ns, "addr", "add", f"{host.mig_addr}/24", "dev", "mig0")
    _ip(ns, "link", "set", "mig0", "up")


def build_client(lab: LabLayout) -> None:
    ns = lab.client_netns
    _veth(ns, "eth0", lab.switch_netns, "client-lan", "lan")
    _ip(ns, "addr", "add", f"{lab.client_addr}/24", "dev", "eth0")
    _ip(ns, "link", "set", "eth0", "up")


def build(lab: LabLayout) -> None:
    """Wire the switch, the client and every host (their namespaces exist already)."""
    build_switch(lab)
    build_client(lab)
    for host in lab.all_hosts():
        build_host(lab, host)


def shape_migration_link(lab: LabLayout, rate: str | None) -> None:
    """Limit every host's migration egress to ``rate`` (None removes the limit)."""
    for host in lab.all_hosts():
        shape_host_link(host, rate)


def shape_host_link(host: HostLayout, rate: str | None) -> None:
    """Limit one host's migration egress (what it sends) to ``rate``; None removes it."""
    if rate is None:
        run(["tc", "-n", host.netns, "qdisc", "del", "dev", "mig0", "root"], check=False)
        return
    bps = parse_rate(rate)
    # veth offloads hand tc up to 64 KiB segments: the bucket must hold a few of them.
    burst = max(256 * 1024, bps // 50)
    run(["tc", "-n", host.netns, "qdisc", "replace", "dev", "mig0", "root", "tbf",
         "rate", f"{bps * 8}bit", "burst", str(burst), "latency", "100ms"])


def set_link_state(host: HostLayout, up: bool) -> None:
    """Plug (``up``) or unplug a host's migration-network cable."""
    if not netns.exists(host.netns):
        raise UsageError(f"host {host.name} is not up")
    _ip(host.netns, "link", "set", "mig0", "up" if up else "down")
