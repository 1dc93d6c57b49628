"""A lab guest's serial console: its log (heartbeat, boot markers) and its command socket."""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from perfplus_agent.errors import PerfplusError

__all__ = ["ConsoleTimeout", "GuestConsole", "Heartbeat", "parse_heartbeat"]

_HB_RE = re.compile(r"^HB seq=(\d+) t=([\d.]+) writes=(\d+) same=(\d+) new=(\d+) zero=(\d+)")


class ConsoleTimeout(PerfplusError):
    """The guest did not print what was expected in time."""


@dataclass(frozen=True)
class Heartbeat:
    """One ``HB`` line of the guest workload."""

    seq: int
    guest_time: float
    writes: int
    same: int
    new: int
    zero: int


def parse_heartbeat(line: str) -> Heartbeat | None:
    m = _HB_RE.match(line)
    if not m:
        return None
    return Heartbeat(int(m[1]), float(m[2]), int(m[3]), int(m[4]), int(m[5]), int(m[6]))


@dataclass
class GuestConsole:
    """The console of a guest on one host: ``log`` and ``socket`` are host-side paths."""

    log: Path
    socket: Path

    def lines(self, offset: int = 0) -> tuple[list[str], int]:
        """Complete lines written since byte ``offset``, and the offset after them."""
        try:
            with open(self.log, "rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except FileNotFoundError:
            return [], offset
        end = data.rfind(b"\n") + 1
        text = data[:end].decode(errors="replace").replace("\r", "")
        return [ln for ln in text.split("\n") if ln], offset + end

    def size(self) -> int:
        try:
            return self.log.stat().st_size
        except FileNotFoundError:
            return 0

    def wait_for(self, pattern: str, timeout: float, offset: int = 0) -> re.Match[str]:
        """First line matching ``pattern`` written after ``offset``; ConsoleTimeout if none."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            lines, offset = self.lines(offset)
            for line in lines:
                m = rx.search(line)
                if m:
                    return m
            if time.monotonic() > deadline:
                raise ConsoleTimeout(
                    f"no {pattern!r} on the console {self.log} within {timeout:.0f} s"
                )
            time.sleep(0.05)

    def command(self, cmd: str, reply: str, timeout: float = 30.0) -> str:
        """Send ``cmd`` on the serial socket and return the first line matching ``reply``."""
        rx = re.compile(reply)
        deadline = time.monotonic() + timeout
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(min(timeout, 5.0))
            try:
                sock.connect(str(self.socket))
            except OSError as exc:
                raise PerfplusError(f"cannot open the guest console {self.socket}: {exc}") from None
            sock.sendall(cmd.encode() + b"\n")
            buf = b""
            while time.monotonic() < deadline:
                sock.settimeout(max(0.05, deadline - time.monotonic()))
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    break
                if not chunk:
                    break
                buf += chunk
                *complete, buf = buf.split(b"\n")
                for raw in complete:
                    line = raw.decode(errors="replace").strip()
                    if rx.search(line):
                        return line
        raise ConsoleTimeout(f"no reply {reply!r} to {cmd!r} within {timeout:.0f} s")
