"""The cheapest possible proxy pair, as a yardstick for the daemons' throughput.

``perfplus bench proxy`` compares the daemons with a direct QEMU-to-QEMU migration. Carrying
the stream through any proxy pair adds two local hops and two processes that must be
scheduled on the same CPUs; this module measures what that alone costs here. The relays move
bytes with ``splice(2)`` (kernel to kernel, no copy to user space, no parsing, no
encryption); between the two hosts they talk TCP over the migration network. For one
migration (``relay_pair``) the source host runs an outgoing relay where the source QEMU
connects, and the destination host an incoming one that connects to the destination QEMU,
which listens on the same address in its own host (libvirt uses one migration URI for both):
``127.0.0.1:<QEMU_PORT>`` over TCP, or a socket path with QEMU on UNIX sockets (``unix://``).

Run as ``python -m perfplus_agent.bench.bare_relay LISTEN TARGET`` inside a host; an
endpoint is ``HOST:PORT`` or an absolute socket path.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from perfplus_agent.daemon.sockets import parse_address
from perfplus_agent.errors import PerfplusError
from perfplus_agent.lab.hostinit import CLEAN_PATH
from perfplus_agent.lab.hosts import enter_argv
from perfplus_agent.lab.lab import Lab
from perfplus_agent.lab.layout import HostLayout

__all__ = ["relay_pair", "serve"]

QEMU_PORT = 49650  # where QEMU connects and listens, in each host (below the daemons' 49690)
LINK_PORT = 49651  # the destination's incoming relay, on the migration network
UNIX_SOCKET = "/run/perfplus-bench/migration.sock"  # the same path in every host
SPLICE_CHUNK = 1 << 20
READY_TIMEOUT_S = 10.0
LIFETIME_S = 6 * 3600.0  # an orphaned relay (its benchmark killed) still ends

Endpoint = tuple[int, str | tuple[str, int]]


def _endpoint(text: str) -> Endpoint:
    if text.startswith("/"):
        return socket.AF_UNIX, text
    return socket.AF_INET, parse_address(text)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Move bytes from ``src`` to ``dst`` until EOF or an error, then end ``dst``'s writing."""
    r, w = os.pipe()
    try:
        while True:
            n = os.splice(src.fileno(), w, SPLICE_CHUNK)
            if n == 0:
                break
            while n:
                n -= os.splice(r, dst.fileno(), n)
    except OSError:
        pass
    finally:
        os.close(r)
        os.close(w)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def _listen(endpoint: Endpoint) -> socket.socket:
    family, address = endpoint
    if family == socket.AF_UNIX:
        assert isinstance(address, str)
        Path(address).parent.mkdir(parents=True, exist_ok=True)
        Path(address).unlink(missing_ok=True)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(address)
        server.listen(8)
        return server
    assert isinstance(address, tuple)
    return socket.create_server(address)


def serve(listen: str, target: str, lifetime_s: float = LIFETIME_S) -> None:
    """Accept connections on ``listen`` for ``lifetime_s`` (the benchmark kills the relay long
    before); relay each to a new connection to ``target``."""
    end = time.monotonic() + lifetime_s
    target_family, target_address = _endpoint(target)
    with _listen(_endpoint(listen)) as server:
        server.settimeout(1.0)
        print("ready", flush=True)
        while time.monotonic() < end:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.settimeout(None)
            upstream = socket.socket(target_family, socket.SOCK_STREAM)
            upstream.settimeout(READY_TIMEOUT_S)
            try:
                upstream.connect(target_address)
            except OSError:
                upstream.close()
                conn.close()
                continue
            upstream.settimeout(None)
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()


@contextlib.contextmanager
def _relays(lab: Lab, plan: list[tuple[HostLayout, str, str]]) -> Iterator[None]:
    """One relay per (host, listen, target) of ``plan``, all ready, for the ``with`` block."""
    procs: list[subprocess.Popen[str]] = []
    try:
        for host, listen, target in plan:
            argv = [sys.executable, "-m", "perfplus_agent.bench.bare_relay", listen, target]
            procs.append(subprocess.Popen(
                enter_argv(lab.init_pid(host), argv), stdout=subprocess.PIPE, text=True,
                env={"PATH": CLEAN_PATH}, start_new_session=True))
        deadline = time.monotonic() + READY_TIMEOUT_S
        for proc in procs:
            assert proc.stdout is not None
            readable, _, _ = select.select([proc.stdout], [], [],
                                           max(0.0, deadline - time.monotonic()))
            line = proc.stdout.readline() if readable else ""  # "" too if it died
            if line.strip() != "ready":
                raise PerfplusError(f"a bare relay did not start within {READY_TIMEOUT_S:g} s "
                                    "(its port or socket taken?)")
        yield
    finally:
        for proc in procs:  # nsenter and the relay it forked share the process group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        for proc in procs:
            proc.wait(5)


@contextlib.contextmanager
def relay_pair(lab: Lab, source: HostLayout, dest: HostLayout, *,
               unix: bool = False) -> Iterator[str]:
    """The relays of one migration from ``source`` to ``dest``, QEMU on loopback TCP or (with
    ``unix``) on UNIX sockets; yields the migration URI."""
    if not unix:
        qemu_side, uri = f"127.0.0.1:{QEMU_PORT}", f"tcp://127.0.0.1:{QEMU_PORT}"
    else:
        qemu_side, uri = UNIX_SOCKET, f"unix://{UNIX_SOCKET}"
        dest.path(UNIX_SOCKET).parent.mkdir(parents=True, exist_ok=True)  # QEMU makes it
        dest.path(UNIX_SOCKET).unlink(missing_ok=True)
    plan = [(source, qemu_side, f"{dest.mig_addr}:{LINK_PORT}"),
            (dest, f"0.0.0.0:{LINK_PORT}", qemu_side)]
    try:
        with _relays(lab, plan):
            yield uri
    finally:
        if unix:
            source.path(UNIX_SOCKET).unlink(missing_ok=True)


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2])
