"""Run a call that may hang (libvirt talking to a stuck daemon) with a time limit.

The call runs in a daemon thread; when the limit passes the caller gets CallTimeout and the
thread is abandoned (an agent process is short-lived, and exiting ends the thread).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from perfplus_agent.errors import PerfplusError

__all__ = ["CallTimeout", "call_with_timeout", "waited_s"]

T = TypeVar("T")
_waited = [0.0]  # seconds spent waiting on bounded calls in this process


def waited_s() -> float:
    """Total time this process spent waiting on bounded (external) calls: the part of an
    action's duration that belongs to libvirt, not to the agent."""
    return _waited[0]


class CallTimeout(PerfplusError):
    """The call did not return in time."""


def call_with_timeout(fn: Callable[[], T], timeout: float, what: str) -> T:
    """``fn()``'s result, its exception, or CallTimeout after ``timeout`` seconds."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"bounded/{what}", daemon=True)
    t0 = time.monotonic()
    thread.start()
    thread.join(max(0.0, timeout))
    _waited[0] += time.monotonic() - t0
    if thread.is_alive():
        raise CallTimeout(f"{what} did not answer within {timeout:.0f} s")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]
