"""libvirt URIs for reaching a peer node and for QEMU's migration stream, built from the
parameters the way ``ocf:heartbeat:VirtualDomain`` builds them (so configurations carry
over), minus its quirks (``%n`` is always the plain target node name)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["DEFAULT_HYPERVISOR", "daemon_address", "migrate_uri", "network_host", "remote_uri"]

DEFAULT_HYPERVISOR = "qemu:///system"


def network_host(node: str, suffix: str) -> str:
    """``node`` on the migration network: the suffix goes before the domain part of an FQDN."""
    if not suffix:
        return node
    short, dot, domain = node.partition(".")
    return f"{short}{suffix}{dot}{domain}"


def daemon_address(node: str, suffix: str, port: int) -> str:
    """Where ``node``'s Perf+ daemon listens: the node on the migration network."""
    return f"{network_host(node, suffix)}:{port}"


def remote_uri(node: str, *, hypervisor: str | None, transport: str, user: str, suffix: str,
               remoteuri: str | None) -> str:
    """The URI of ``node``'s libvirt (what ``virsh -c`` would take)."""
    if remoteuri:
        return remoteuri.replace("%n", node)
    parts = urlsplit(hypervisor or DEFAULT_HYPERVISOR)
    scheme = parts.scheme.split("+")[0]
    if transport:
        scheme = f"{scheme}+{transport}"
    host = network_host(node, suffix)
    if user and re.fullmatch(r"[a-z][-a-z0-9]*", user):
        host = f"{user}@{host}"
    return urlunsplit((scheme, host, parts.path or "/system", parts.query, ""))


def migrate_uri(node: str, *, migrateuri: str | None, options_uri: str | None, suffix: str,
                port: int | None) -> str | None:
    """Where QEMU's stream goes, or None to let libvirt choose (the target's own address).
    ``options_uri`` is a ``--migrateuri`` found in ``migrate_options``."""
    for template in (migrateuri, options_uri):
        if template:
            return template.replace("%n", node)
    if suffix:
        host = network_host(node, suffix)
        return f"tcp://{host}:{port}" if port else f"tcp://{host}"
    return None
