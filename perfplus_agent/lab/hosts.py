"""Start and stop simulated hosts (their init and daemons), and run commands inside them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import libvirt
import psutil

from perfplus_agent.errors import PerfplusError
from perfplus_agent.lab import netns
from perfplus_agent.lab.layout import HostLayout, LabLayout
from perfplus_agent.libvirt_conn import open_connection

__all__ = ["enter_argv", "kill_host", "start_host", "wait_libvirt"]

INIT_FIND_TIMEOUT = 10.0
LIBVIRT_READY_TIMEOUT = 30.0


def start_host(lab: LabLayout, host: HostLayout, cluster: bool = False) -> int:
    """Launch the host's init in fresh namespaces; return its PID as the machine sees it."""
    log = open(host.dir / "hostinit.log", "ab")  # noqa: SIM115 - handed to the child
    argv = [
        "ip", "netns", "exec", host.netns,
        "unshare", "--mount", "--uts", "--pid", "--fork", "--mount-proc",
        "--propagation", "private", "--",
        sys.executable, "-m", "perfplus_agent.lab.hostinit",
        str(host.dir), str(lab.state_dir), host.name, *(["--cluster"] if cluster else []),
    ]
    launcher = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    deadline = time.monotonic() + INIT_FIND_TIMEOUT
    while time.monotonic() < deadline:
        if launcher.poll() is not None:
            raise PerfplusError(f"{host.name}: init exited at once; see {host.dir}/hostinit.log")
        try:
            children = psutil.Process(launcher.pid).children()
        except psutil.NoSuchProcess:
            children = []
        if children:
            return children[0].pid
        time.sleep(0.01)
    raise PerfplusError(f"{host.name}: init did not start within {INIT_FIND_TIMEOUT:.0f} s")


def wait_libvirt(host: HostLayout, init_pid: int, timeout: float = LIBVIRT_READY_TIMEOUT) -> None:
    """Wait until the host's libvirtd answers; PerfplusError with the log's tail otherwise."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not psutil.pid_exists(init_pid):
            break
        if host.libvirt_socket.exists():
            try:
                conn = open_connection(host.local_uri)
                conn.getHostname()
                conn.close()
                return
            except (libvirt.libvirtError, PerfplusError) as exc:
                last = str(exc)
        time.sleep(0.05)
    tail = _tail(host.dir / "hostinit.log")
    raise PerfplusError(f"{host.name}: libvirtd did not answer within {timeout:.0f} s "
                        f"({last or tail or 'no log'})")


def _tail(path: os.PathLike[str], lines: int = 3) -> str:
    try:
        with open(path) as fh:
            return " | ".join(fh.read().strip().splitlines()[-lines:])
    except OSError:
        return ""


def kill_host(host: HostLayout, init_pid: int | None, timeout: float = 10.0) -> None:
    """Power the host off: SIGKILL its init, which ends every process of the host at once,
    then whatever else is left in its network namespace (the launcher, ``nsenter`` users)."""
    if init_pid and netns.pid_in_netns(init_pid, host.netns):
        with contextlib.suppress(ProcessLookupError):
            os.kill(init_pid, signal.SIGKILL)
    netns.kill_all(host.netns, timeout)


def enter_argv(init_pid: int, argv: list[str]) -> list[str]:
    """Command line that runs ``argv`` inside the host (all of its namespaces)."""
    return ["nsenter", "-t", str(init_pid), "-m", "-u", "-n", "-p", "--wd=/", "--", *argv]
