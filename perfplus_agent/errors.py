"""Exceptions shared by the whole package.

Every error a user can cause or meet carries a one-line message meant for humans; the
CLI prints ``str(err)`` and exits non-zero, the OCF layer turns it into an exit reason.
"""

from __future__ import annotations

__all__ = ["CommandError", "PerfplusError", "UsageError"]


class PerfplusError(Exception):
    """Base class: a failure with a clear one-line message."""


class UsageError(PerfplusError):
    """The caller asked for something that cannot be done (bad name, bad size, ...)."""


class CommandError(PerfplusError):
    """An external command failed or timed out."""

    def __init__(self, argv: list[str], returncode: int | None, stderr: str) -> None:
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr
        last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
        status = "timed out" if returncode is None else f"exited {returncode}"
        super().__init__(f"{' '.join(argv)} {status}" + (f": {last}" if last else ""))
