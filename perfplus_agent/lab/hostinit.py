"""PID 1 of a simulated host.

Started by the lab inside the host's network namespace, in fresh mount, UTS and PID
namespaces (``unshare --mount --uts --pid --fork --mount-proc --propagation private``). It
gives the host its private directories and hostname, starts the host's daemons in order,
reaps orphans (QEMU daemonizes, so its parent becomes us) and stops the daemons in reverse
order on SIGTERM. Because it is PID 1, a SIGKILL from outside ends every process of the host
at once: a realistic power cut, and a cleanup that cannot miss a process.

Run as ``python -m perfplus_agent.lab.hostinit HOST_DIR HOSTS_FILE HOSTNAME``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from perfplus_agent.lab.layout import PRIVATE_DIRS

__all__ = ["SERVICES", "Service", "main"]

CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Service:
    """A daemon of the host, started in list order and stopped in reverse order."""

    name: str
    argv: tuple[str, ...]
    ready_path: str  # exists (inside the host) once the daemon accepts requests
    ready_timeout: float = 20.0


SERVICES: tuple[Service, ...] = (
    Service("libvirtd", ("libvirtd", "--listen"), "/run/libvirt/libvirt-sock"),
)


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} hostinit: {msg}", flush=True)


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, timeout=10)


def setup_filesystem(host_dir: Path, hosts_file: Path) -> None:
    """Private /run, libvirt directories, /var/log, /etc/hosts and /dev/shm."""
    # Every new mount namespace inherits copies of /run/netns/* mounts, and those copies would
    # keep other namespaces alive after 'ip netns del'. Drop them before hiding /run.
    if os.path.ismount("/run/netns") or os.path.isdir("/run/netns"):
        subprocess.run(["umount", "-R", "-l", "/run/netns"], check=False, timeout=10,
                       stderr=subprocess.DEVNULL)
    mount("--bind", str(hosts_file), "/etc/hosts")
    mount("-t", "tmpfs", "-o", "mode=1777,size=64m", "tmpfs", "/dev/shm")
    # /run last: the lab's state directory may itself live under /run.
    for inside, sub in sorted(PRIVATE_DIRS, key=lambda d: d[0] == "/run"):
        mount("--bind", str(host_dir / sub), inside)


def _unblock_signals() -> None:
    """In a child: undo the signal mask init runs with (daemons need their signals)."""
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def start(service: Service, env: dict[str, str]) -> subprocess.Popen[bytes]:
    logf = open(f"/var/log/{service.name}.out", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(service.argv, env=env, stdout=logf, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL,
                            preexec_fn=_unblock_signals)  # noqa: PLW1509 - no threads here
    logf.close()
    deadline = time.monotonic() + service.ready_timeout
    while not os.path.exists(service.ready_path):
        if proc.poll() is not None:
            raise RuntimeError(f"{service.name} exited with {proc.returncode} while starting")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{service.name} not ready after {service.ready_timeout:.0f} s")
        time.sleep(0.02)
    log(f"{service.name} ready (pid {proc.pid})")
    return proc


def stop(name: str, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        log(f"{name} ignored SIGTERM for {timeout:.0f} s: killing it")
        proc.kill()
        proc.wait(5)


class Init:
    """The supervising loop: reap every child at once, stop cleanly on SIGTERM.

    Reaping must be immediate: libvirt decides that a QEMU it stopped is gone with
    ``kill(pid, 0)``, which still succeeds on a zombie, so a slow reaper slows down every
    migration's end and every stop.
    """

    WAKE_SIGNALS = (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []
        signal.pthread_sigmask(signal.SIG_BLOCK, self.WAKE_SIGNALS)

    def reap(self) -> None:
        """Collect exited children and orphans (daemonized QEMUs end up as ours)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for _name, proc in self.running:
                if proc.pid == pid:
                    proc.returncode = os.waitstatus_to_exitcode(status)  # Popen can't see it

    def loop(self) -> None:
        while True:
            info = signal.sigtimedwait(self.WAKE_SIGNALS, 5.0)
            self.reap()
            if info is not None and info.si_signo != signal.SIGCHLD:
                break
        log("stopping")
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGCHLD])
        for name, proc in reversed(self.running):
            stop(name, proc)
        self.reap()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or os.getpid() != 1:
        print("usage: hostinit HOST_DIR HOSTS_FILE HOSTNAME (as PID 1 of a new PID namespace)",
              file=sys.stderr)
        return 2
    host_dir, hosts_file, hostname = Path(args[0]), Path(args[1]), args[2]
    init = Init()
    try:
        setup_filesystem(host_dir, hosts_file)
        socket.sethostname(hostname)
    except (OSError, subprocess.SubprocessError) as exc:
        log(f"setup failed: {exc}")
        return 1
    env = {"PATH": CLEAN_PATH, "HOME": "/root", "LC_ALL": "C"}
    try:
        for service in SERVICES:
            init.running.append((service.name, start(service, env)))
    except (OSError, RuntimeError) as exc:
        log(f"start failed: {exc}")
        for name, proc in reversed(init.running):
            stop(name, proc)
        return 1
    log("up")
    init.loop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
