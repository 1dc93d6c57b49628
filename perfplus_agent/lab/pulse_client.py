"""The LAN client's probe of a guest's ``pulse`` service: pings over one TCP connection (and
UDP) at a fixed rate and measures the longest gap between replies.

A migration shows up as one gap about as long as its downtime; a restarted guest shows up as a
new boot id, and a lost connection as an error. Runs in the lab's client namespace:

    python -m perfplus_agent.lab.pulse_client HOST PORT [--rate HZ] [--max-seconds S]

It stops on SIGTERM, SIGINT or after ``--max-seconds``, and prints its results as JSON.
"""

from __future__ import annotations

import argparse
import json
import selectors
import signal
import socket
import sys
import time
from dataclasses import asdict, dataclass, field

CONNECTED = "CONNECTED"  # on stderr once the first TCP reply arrived

__all__ = ["ChannelResult", "main"]


@dataclass
class ChannelResult:
    """What one channel (TCP or UDP) saw."""

    sent: int = 0
    received: int = 0
    max_gap_ms: float = 0.0
    boot_ids: list[str] = field(default_factory=list)
    error: str | None = None
    _last_reply: float | None = None

    def reply(self, now: float, boot: str) -> None:
        self.received += 1
        if self._last_reply is not None:
            self.max_gap_ms = max(self.max_gap_ms, (now - self._last_reply) * 1000.0)
        self._last_reply = now
        if boot not in self.boot_ids:
            self.boot_ids.append(boot)

    def public(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


def _parse_pong(line: bytes) -> str | None:
    parts = line.split()
    if len(parts) >= 3 and parts[0] == b"PONG":
        return parts[2].decode(errors="replace")
    return None


def probe(host: str, port: int, rate: float, max_seconds: float, stop: list[bool]) -> dict:
    """Ping until ``stop[0]`` is set or time runs out; return results per channel."""
    tcp, udp = ChannelResult(), ChannelResult()
    sel = selectors.DefaultSelector()
    tsock = socket.create_connection((host, port), timeout=5.0)
    tsock.setblocking(False)
    tsock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    usock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    usock.connect((host, port))
    usock.setblocking(False)
    sel.register(tsock, selectors.EVENT_READ, "tcp")
    sel.register(usock, selectors.EVENT_READ, "udp")
    period = 1.0 / rate
    t_end = time.monotonic() + max_seconds
    next_send = time.monotonic()
    buf = b""
    seq = 0
    while not stop[0] and time.monotonic() < t_end:
        now = time.monotonic()
        if now >= next_send:
            seq += 1
            msg = f"PING {seq}".encode()
            if tcp.error is None:
                try:
                    tsock.send(msg + b"\n")
                    tcp.sent += 1
                except BlockingIOError:
                    pass  # the guest is paused (downtime): the kernel queue is full
                except OSError as exc:
                    tcp.error = f"send: {exc}"
            try:
                usock.send(msg)
                udp.sent += 1
            except OSError:
                pass  # no route/refused while the guest moves: counted as unanswered
            next_send += period
            if next_send < now:
                next_send = now + period
        for key, _ in sel.select(max(0.0, next_send - time.monotonic())):
            now = time.monotonic()
            if key.data == "tcp":
                try:
                    chunk = tsock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    tcp.error = f"recv: {exc}"
                    sel.unregister(tsock)
                    continue
                if not chunk:
                    tcp.error = "connection closed by the guest"
                    sel.unregister(tsock)
                    continue
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    boot = _parse_pong(line)
                    if boot:
                        if not tcp.received:
                            sys.stderr.write(f"{CONNECTED}\n")  # ServiceProbe waits for it
                            sys.stderr.flush()
                        tcp.reply(now, boot)
            else:
                try:
                    boot = _parse_pong(usock.recv(2048))
                except OSError:
                    continue
                if boot:
                    udp.reply(now, boot)
    tsock.close()
    usock.close()
    return {"tcp": tcp.public(), "udp": udp.public(), "rate_hz": rate}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--rate", type=float, default=200.0, help="pings per second")
    ap.add_argument("--max-seconds", type=float, default=600.0)
    args = ap.parse_args(argv)
    stop = [False]

    def on_signal(_signo: int, _frame: object) -> None:
        stop[0] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        result = probe(args.host, args.port, args.rate, args.max_seconds, stop)
    except OSError as exc:
        print(json.dumps({"error": f"cannot reach {args.host}:{args.port}: {exc}"}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
