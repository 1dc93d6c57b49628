"""Logging the way resource agents log, and the exit reason Pacemaker shows in crm_mon.

Pacemaker's executor logs what an agent writes on stderr; an agent also appends to
``HA_LOGFILE``/``HA_DEBUGLOG`` when they are set. Lines start with the agent and the resource,
so that a grep for the resource finds them in the cluster log.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

__all__ = ["configure_logging", "write_exit_reason"]

_FORMAT = "%(asctime)s {tag}[%(process)d]: %(levelname)s: %(message)s"
_DATEFMT = "%b %d %H:%M:%S"


def _is_true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "yes", "true", "on", "y")


def configure_logging(instance: str, environ: Mapping[str, str] | None = None) -> logging.Logger:
    """Logger ``perfplus`` writing to stderr and to HA_LOGFILE / HA_DEBUGLOG when set."""
    env = os.environ if environ is None else environ
    debug = _is_true(env.get("HA_debug") or env.get("PCMK_debug"))
    fmt = logging.Formatter(_FORMAT.format(tag=f"VirtualDomain({instance})"), _DATEFMT)
    root = logging.getLogger("perfplus_agent")
    root.handlers.clear()
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    root.propagate = False
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    for key, level in (("HA_LOGFILE", logging.INFO), ("HA_DEBUGLOG", logging.DEBUG)):
        path = env.get(key)
        if path:
            try:
                handler: logging.Handler = logging.FileHandler(path)
            except OSError:
                continue
            handler.setLevel(level if debug or level == logging.INFO else logging.CRITICAL)
            handlers.append(handler)
    for handler in handlers:
        handler.setFormatter(fmt)
        root.addHandler(handler)
    return root


def write_exit_reason(reason: str, prefix: str = "ocf-exit-reason:") -> None:
    """Hand Pacemaker the one-line reason of a failure (shown by crm_mon)."""
    one_line = " ".join(reason.split())
    sys.stderr.write(f"{prefix}{one_line}\n")
    sys.stderr.flush()
