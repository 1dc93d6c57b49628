"""OCF exit codes (Resource Agent API 1.1) and the error that carries one with its reason."""

from __future__ import annotations

from enum import IntEnum, unique

from perfplus_agent.errors import PerfplusError

__all__ = ["OcfError", "OcfExit"]


@unique
class OcfExit(IntEnum):
    """Exit codes of OCF 1.1, with Pacemaker's names."""

    SUCCESS = 0
    ERR_GENERIC = 1
    ERR_ARGS = 2
    ERR_UNIMPLEMENTED = 3
    ERR_PERM = 4
    ERR_INSTALLED = 5
    ERR_CONFIGURED = 6
    NOT_RUNNING = 7
    RUNNING_PROMOTED = 8
    FAILED_PROMOTED = 9
    DEGRADED = 190
    DEGRADED_PROMOTED = 191


class OcfError(PerfplusError):
    """A failure that ends the action with ``code``; ``str()`` is the one-line exit reason."""

    def __init__(self, code: OcfExit, reason: str) -> None:
        super().__init__(reason)
        self.code = code
