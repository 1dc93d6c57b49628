"""One libvirt daemon as the agent sees it: domain states and the operations on them, every
call bounded in time and every libvirt error turned into a sentence."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from enum import Enum

import libvirt

from perfplus_agent.bounded import CallTimeout, call_with_timeout
from perfplus_agent.errors import PerfplusError
from perfplus_agent.libvirt_conn import LibvirtUnreachable, open_connection

__all__ = ["DomainState", "Hypervisor", "HypervisorError", "StateReport"]


class HypervisorError(PerfplusError):
    """libvirt refused or failed an operation."""


class DomainState(Enum):
    """What a domain's libvirt state means for high availability."""

    ABSENT = "absent"  # not defined, or defined and shut off
    RUNNING = "running"  # running, blocked, idle, paused by a user or a migration
    STOPPING = "stopping"  # in shutdown: still active
    FAILED = "failed"  # crashed, paused after an I/O error, post-copy failure, ...


@dataclass(frozen=True)
class StateReport:
    state: DomainState
    detail: str


_PAUSED_FAILED = {
    libvirt.VIR_DOMAIN_PAUSED_IOERROR: "paused after an I/O error",
    libvirt.VIR_DOMAIN_PAUSED_CRASHED: "paused after a guest crash",
    libvirt.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED: "paused after a failed post-copy migration",
}


def interpret(state: int, reason: int) -> StateReport:
    """Map libvirt's (state, reason) to a DomainState (pure; tested on its own)."""
    if state in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED):
        return StateReport(DomainState.RUNNING, "running")
    if state == libvirt.VIR_DOMAIN_PAUSED:
        if reason in _PAUSED_FAILED:
            return StateReport(DomainState.FAILED, _PAUSED_FAILED[reason])
        return StateReport(DomainState.RUNNING, "paused")
    if state == libvirt.VIR_DOMAIN_SHUTDOWN:
        return StateReport(DomainState.STOPPING, "shutting down")
    if state == libvirt.VIR_DOMAIN_SHUTOFF:
        return StateReport(DomainState.ABSENT, "shut off")
    if state == libvirt.VIR_DOMAIN_CRASHED:
        return StateReport(DomainState.FAILED, "crashed")
    if state == libvirt.VIR_DOMAIN_PMSUSPENDED:
        return StateReport(DomainState.FAILED, "suspended by guest power management")
    return StateReport(DomainState.FAILED, f"in an unknown state ({state}/{reason})")


class Hypervisor:
    """A libvirt connection opened lazily, with ``timeout`` on every call."""

    def __init__(self, uri: str, timeout: float = 10.0) -> None:
        self.uri = uri
        self.timeout = timeout
        self._conn: libvirt.virConnect | None = None

    def _call(self, what: str, fn):  # noqa: ANN001, ANN202 - thin generic wrapper
        try:
            return call_with_timeout(fn, self.timeout, f"libvirt at {self.uri} ({what})")
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"{what} failed: {exc.get_error_message()}") from None

    @property
    def conn(self) -> libvirt.virConnect:
        """The connection; LibvirtUnreachable (or CallTimeout) when the daemon is not there."""
        if self._conn is None:
            self._conn = call_with_timeout(lambda: open_connection(self.uri), self.timeout,
                                           f"libvirt at {self.uri}")
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(CallTimeout, libvirt.libvirtError):
                call_with_timeout(self._conn.close, 2.0, "close")
            self._conn = None

    def domain(self, name: str) -> libvirt.virDomain | None:
        """The domain called ``name``, or None when libvirt does not know it."""
        conn = self.conn

        def lookup() -> libvirt.virDomain | None:
            try:
                return conn.lookupByName(name)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    return None
                raise

        return self._call(f"looking up {name}", lookup)

    def state(self, name: str) -> StateReport:
        dom = self.domain(name)
        if dom is None:
            return StateReport(DomainState.ABSENT, "not defined")
        try:
            state, reason = self._call(f"state of {name}", dom.state)
        except HypervisorError as exc:
            if "not found" in str(exc).lower():
                return StateReport(DomainState.ABSENT, "not defined")
            raise
        return interpret(state, reason)

    def create(self, xml: str, name: str) -> None:
        self._call(f"starting {name}", lambda: self.conn.createXML(xml, 0))

    def shutdown(self, name: str, flags: int) -> None:
        dom = self.domain(name)
        if dom is not None:
            self._call(f"shutting down {name}", lambda: dom.shutdownFlags(flags))

    def destroy(self, name: str) -> None:
        dom = self.domain(name)
        if dom is None:
            return
        try:
            self._call(f"destroying {name}", dom.destroy)
        except HypervisorError as exc:
            if "not running" not in str(exc) and "not found" not in str(exc).lower():
                raise

    def save(self, name: str, path: str) -> None:
        dom = self.domain(name)
        if dom is not None:
            self._call(f"saving {name} to {path}", lambda: dom.save(path))

    def restore(self, path: str) -> None:
        self._call(f"restoring {path}", lambda: self.conn.restore(path))

    def info(self, name: str) -> tuple[int, int]:
        """(vCPUs, maximum memory in MiB) of a running domain."""
        dom = self.domain(name)
        if dom is None:
            raise HypervisorError(f"{name} is not defined")
        _state, max_kib, _mem, vcpus, _cpu = self._call(f"info of {name}", dom.info)
        return vcpus, max_kib // 1024


UNREACHABLE = (LibvirtUnreachable, CallTimeout)
