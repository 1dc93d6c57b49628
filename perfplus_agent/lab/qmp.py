"""A small synchronous QMP client for lab guests that QEMU runs without libvirt."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

from perfplus_agent.errors import PerfplusError

__all__ = ["QMP", "QMPError"]


class QMPError(PerfplusError):
    """QEMU answered a command with an error, or the monitor went away."""


class QMP:
    """One QMP connection: ``cmd`` sends a command and returns its ``return`` value;
    asynchronous events seen meanwhile are kept in ``events``."""

    def __init__(self, path: Path, timeout: float = 30.0, connect_s: float = 15.0) -> None:
        deadline = time.monotonic() + connect_s
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(str(path))
                break
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                sock.close()
                if time.monotonic() > deadline:
                    raise QMPError(f"no QMP monitor at {path} within {connect_s:.0f} s: "
                                   f"{exc}") from None
                time.sleep(0.05)
        self._sock = sock
        self._file = sock.makefile("rb")
        self.events: list[dict[str, Any]] = []
        greeting = self._read()
        if "QMP" not in greeting:
            raise QMPError(f"not a QMP greeting: {greeting}")
        self.cmd("qmp_capabilities")

    def _read(self) -> dict[str, Any]:
        try:
            line = self._file.readline()
        except OSError as exc:
            raise QMPError(f"QMP connection failed: {exc}") from None
        if not line:
            raise QMPError("QEMU closed its QMP monitor")
        return json.loads(line)

    def cmd(self, execute: str, **arguments: Any) -> Any:
        msg: dict[str, Any] = {"execute": execute}
        if arguments:
            msg["arguments"] = arguments
        self._sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            reply = self._read()
            if "event" in reply:
                self.events.append(reply)
                continue
            if "error" in reply:
                err = reply["error"]
                raise QMPError(f"{execute}: {err.get('desc', err)}")
            return reply.get("return")

    def close(self) -> None:
        try:
            self._file.close()
            self._sock.close()
        except OSError:
            pass
