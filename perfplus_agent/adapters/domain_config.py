"""The domain's libvirt XML as the ``config`` parameter names it: read and checked once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from perfplus_agent.ocf.exitcodes import OcfError, OcfExit

__all__ = ["DomainConfig", "read_domain_config"]


@dataclass(frozen=True)
class DomainConfig:
    """What the agent needs from the XML."""

    path: str
    xml: str
    name: str
    uuid: str | None
    pools: tuple[str, ...]
    networks: tuple[str, ...]


def read_domain_config(path: str) -> DomainConfig:
    """Parse ``path``; ERR_INSTALLED if unreadable here, ERR_CONFIGURED if not a domain."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise OcfError(OcfExit.ERR_INSTALLED,
                       f"domain configuration {path} is not readable on this node: "
                       f"{exc.strerror or exc}") from None
    try:
        root = etree.fromstring(text.encode())
    except etree.XMLSyntaxError as exc:
        raise OcfError(OcfExit.ERR_CONFIGURED,
                       f"domain configuration {path} is not well-formed XML: {exc}") from None
    if root.tag != "domain":
        raise OcfError(OcfExit.ERR_CONFIGURED,
                       f"domain configuration {path} is a <{root.tag}>, not a libvirt <domain>")
    name = (root.findtext("name") or "").strip()
    if not name:
        raise OcfError(OcfExit.ERR_CONFIGURED, f"domain configuration {path} has no <name>")
    pools = tuple(sorted({s.get("pool") for s in root.iter("source") if s.get("pool")}))
    networks = tuple(sorted({s.get("network") for s in root.iter("source") if s.get("network")}))
    return DomainConfig(path=path, xml=text, name=name,
                        uuid=(root.findtext("uuid") or "").strip() or None,
                        pools=pools, networks=networks)
