"""Where else the domain runs: the question a start must answer before it may boot a copy.

Every peer is asked in parallel, each call bounded. A peer that cannot be asked is a reason
to refuse the start, unless Pacemaker says that peer was fenced: only then is it known not
to run anything.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from perfplus_agent.adapters.hypervisor import (
    UNREACHABLE,
    DomainState,
    Hypervisor,
    HypervisorError,
)

__all__ = ["PeerAnswer", "ask_peers"]


@dataclass(frozen=True)
class PeerAnswer:
    """One peer's answer: its state for the domain, or why it could not be asked."""

    node: str
    uri: str
    state: DomainState | None
    detail: str

    @property
    def runs_it(self) -> bool:
        return self.state in (DomainState.RUNNING, DomainState.STOPPING, DomainState.FAILED)


def ask_peers(name: str, peers: list[str], uri_of: Callable[[str], str],
              timeout: float) -> list[PeerAnswer]:
    """Ask every peer's libvirt whether it runs ``name``."""

    def ask(node: str) -> PeerAnswer:
        uri = uri_of(node)
        hv = Hypervisor(uri, timeout=timeout)
        try:
            report = hv.state(name)
            return PeerAnswer(node, uri, report.state, report.detail)
        except UNREACHABLE as exc:
            return PeerAnswer(node, uri, None, str(exc))
        except HypervisorError as exc:
            return PeerAnswer(node, uri, None, str(exc))
        finally:
            hv.close()

    if not peers:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(peers))) as pool:
        return list(pool.map(ask, peers))
