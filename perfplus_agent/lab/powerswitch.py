"""The lab's power switch: a small daemon on the machine that powers simulated hosts off and
on, so that fencing in the lab has a real effect (a fenced host's every process dies).

Protocol on a unix socket, one request line, one reply line:
``off HOST`` / ``on HOST`` / ``reboot HOST`` (off now, on REBOOT_DELAY_S later) /
``status HOST`` -> ``ok`` | ``on`` | ``off`` | ``error <why>``.
Run as ``python -m perfplus_agent.lab.powerswitch LAB_NAME STATE_ROOT`` (the lab starts it).
"""

from __future__ import annotations

import socket
import socketserver
import sys
import threading
import time
from pathlib import Path

from perfplus_agent.errors import PerfplusError
from perfplus_agent.lab.lab import Lab
from perfplus_agent.lab.layout import LabLayout

__all__ = ["request", "serve"]

REQUEST_TIMEOUT = 60.0
REBOOT_DELAY_S = 5.0


def request(sock_path: str | Path, line: str, timeout: float = REQUEST_TIMEOUT) -> str:
    """Send one request to the switch and return its reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(sock_path))
        sock.sendall(line.encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.decode().strip()


def _log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} powerswitch: {msg}", flush=True)


def serve(lab: Lab) -> None:
    """Serve requests until killed."""
    lock = threading.Lock()

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            words = self.rfile.readline(256).decode(errors="replace").split()
            reply = "error usage: off|on|reboot|status HOST"
            if len(words) == 2 and words[0] in ("off", "on", "reboot", "status"):
                with lock:
                    try:
                        reply = _act(lab, words[0], words[1])
                    except PerfplusError as exc:
                        reply = f"error {exc}"
            _log(f"{' '.join(words)} -> {reply}")
            self.wfile.write(reply.encode() + b"\n")

    path = lab.layout.power_socket
    path.unlink(missing_ok=True)
    with socketserver.ThreadingUnixStreamServer(str(path), Handler) as server:
        path.chmod(0o600)
        _log(f"serving on {path}")
        server.serve_forever()


_pending_on: dict[str, threading.Timer] = {}  # host -> the end of its reboot


def _act(lab: Lab, action: str, host: str) -> str:
    if action == "status":
        return "on" if lab.is_powered(host) else "off"
    pending = _pending_on.pop(host, None)
    if pending is not None:
        pending.cancel()  # a later request overrides the end of an earlier reboot
    if action in ("off", "reboot"):
        lab.power_off(host)
        if action == "reboot":
            # Like a real machine, the host comes back only after a while: a host that
            # rejoined before its fencing was reported would take the report for a second
            # fencing of itself ("we were allegedly just fenced") and stay down.
            timer = threading.Timer(REBOOT_DELAY_S, _power_on_later, (lab, host))
            _pending_on[host] = timer
            timer.start()
        return "ok"
    lab.power_on(host)
    return "ok"


def _power_on_later(lab: Lab, host: str) -> None:
    try:
        lab.power_on(host)
        _log(f"on {host} (end of reboot) -> ok")
    except PerfplusError as exc:
        _log(f"on {host} (end of reboot) -> error {exc}")


def main() -> None:
    if len(sys.argv) != 3:
        print("usage: powerswitch LAB_NAME STATE_ROOT", file=sys.stderr)
        sys.exit(2)
    layout = LabLayout.create(sys.argv[1], 1, root=Path(sys.argv[2]))
    record = Lab(layout).record()
    if record is None:
        print(f"no lab {sys.argv[1]}", file=sys.stderr)
        sys.exit(1)
    serve(Lab(LabLayout.create(record.name, record.hosts, root=layout.root)))


if __name__ == "__main__":
    main()
