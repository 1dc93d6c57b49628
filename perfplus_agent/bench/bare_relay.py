"""The cheapest possible proxy pair, as a yardstick for the daemons' throughput.

``perfplus bench proxy`` compares the daemons with a direct QEMU-to-QEMU migration. Carrying
the stream through any proxy pair adds two local TCP hops and two processes that must be
scheduled on the same CPUs; this module measures what that alone costs here. Each lab host
runs two relays that move bytes with ``splice(2)`` (kernel to kernel, no copy to user space,
no parsing, no encryption):

* an outgoing one on ``127.0.0.1:<port of its host>``, where the source QEMU connects, to the
  destination host's incoming relay over the migration network;
* an incoming one on ``0.0.0.0:<port of the peer> + 1``, to the destination QEMU, which
  listens on ``127.0.0.1:<port of the source host>`` (libvirt takes the port from the URI).

Run as ``python -m perfplus_agent.bench.bare_relay LISTEN TARGET`` inside a host.
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

from perfplus_agent.daemon.sockets import parse_address
from perfplus_agent.errors import PerfplusError
from perfplus_agent.lab.hostinit import CLEAN_PATH
from perfplus_agent.lab.hosts import enter_argv
from perfplus_agent.lab.lab import Lab

__all__ = ["BASE_PORT", "bare_relays", "relay_port"]

BASE_PORT = 49650  # below the daemons' proxy ports; one pair of ports per host
SPLICE_CHUNK = 1 << 20
READY_TIMEOUT_S = 10.0
LIFETIME_S = 6 * 3600.0  # an orphaned relay (its benchmark killed) still ends


def relay_port(host_index: int) -> int:
    """The port the source QEMU of host ``host_index`` (1-based) migrates to, through the
    relays; the destination QEMU listens on the same port."""
    return BASE_PORT + 2 * (host_index - 1)


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


def serve(listen: tuple[str, int], target: tuple[str, int],
          lifetime_s: float = LIFETIME_S) -> None:
    """Accept connections for ``lifetime_s`` (the benchmark kills the relay long before);
    relay each to a new connection to ``target``."""
    end = time.monotonic() + lifetime_s
    with socket.create_server(listen) as server:
        server.settimeout(1.0)
        print("ready", flush=True)
        while time.monotonic() < end:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.settimeout(None)
            try:
                upstream = socket.create_connection(target, timeout=READY_TIMEOUT_S)
            except OSError:
                conn.close()
                continue
            upstream.settimeout(None)
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()


@contextlib.contextmanager
def bare_relays(lab: Lab) -> Iterator[None]:
    """Both relays of each host of a two-host ``lab`` running for the ``with`` block."""
    hosts = lab.layout.all_hosts()
    if len(hosts) != 2:
        raise PerfplusError("the bare relays are wired for a lab of two hosts")
    procs: list[subprocess.Popen[str]] = []
    try:
        for host in hosts:
            for peer in hosts:
                if peer == host:
                    continue
                out = relay_port(host.index)
                back = relay_port(peer.index)
                for listen, target in ((f"127.0.0.1:{out}", f"{peer.mig_addr}:{out + 1}"),
                                       (f"0.0.0.0:{back + 1}", f"127.0.0.1:{back}")):
                    argv = [sys.executable, "-m", "perfplus_agent.bench.bare_relay", listen,
                            target]
                    procs.append(subprocess.Popen(
                        enter_argv(lab.init_pid(host), argv), stdout=subprocess.PIPE,
                        text=True, env={"PATH": CLEAN_PATH}, start_new_session=True))
        deadline = time.monotonic() + READY_TIMEOUT_S
        for proc in procs:
            assert proc.stdout is not None
            readable, _, _ = select.select([proc.stdout], [], [],
                                           max(0.0, deadline - time.monotonic()))
            line = proc.stdout.readline() if readable else ""  # "" too if it died
            if line.strip() != "ready":
                raise PerfplusError(f"a bare relay did not start within {READY_TIMEOUT_S:g} s "
                                    "(its port taken?)")
        yield
    finally:
        for proc in procs:  # nsenter and the relay it forked share the process group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        for proc in procs:
            proc.wait(5)


if __name__ == "__main__":
    serve(parse_address(sys.argv[1]), parse_address(sys.argv[2]))
