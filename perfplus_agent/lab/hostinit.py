"""PID 1 of a simulated host.

Started by the lab inside the host's network namespace, in fresh mount, UTS and PID
namespaces (``unshare --mount --uts --pid --fork --mount-proc --propagation private``). It
gives the host its private directories and hostname, starts the host's daemons in order
(libvirtd; with ``--cluster`` also corosync and pacemakerd), reaps orphans (QEMU daemonizes,
so its parent becomes us) and stops the daemons in reverse order on SIGTERM. Because it is
PID 1, a SIGKILL from outside ends every process of the host at once: a realistic power cut,
and a cleanup that cannot miss a process.

Signals: SIGTERM/SIGINT stop everything (pacemakerd first, which moves resources away);
SIGHUP stops only the cluster stack (the host leaves the cluster, its guests keep running);
SIGUSR1 starts whatever service is not running.

Run as ``python -m perfplus_agent.lab.hostinit HOST_DIR LAB_DIR HOSTNAME [--cluster]``.
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

from perfplus_agent.lab.layout import CLUSTER_DIRS, PRIVATE_DIRS

__all__ = ["CLEAN_PATH", "CLUSTER_SERVICES", "SERVICES", "Service", "main"]

CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
OCF_DIR = "/usr/lib/ocf/resource.d"
SBIN_DIR = "/usr/sbin"


@dataclass(frozen=True)
class Service:
    """A daemon of the host, started in list order and stopped in reverse order."""

    name: str
    argv: tuple[str, ...]
    ready_path: str | None = None  # exists (inside the host) once the daemon is usable
    ready_cmd: tuple[str, ...] | None = None  # or: succeeds once the daemon is usable
    ready_timeout: float = 20.0
    cluster: bool = False  # part of the cluster stack (SIGHUP stops these)


SERVICES: tuple[Service, ...] = (
    Service("libvirtd", ("libvirtd", "--listen"), ready_path="/run/libvirt/libvirt-sock"),
)
DAEMON_PORT = 49690


def daemon_service(key_file: Path) -> Service:
    """The host's Perf+ migration daemon (after libvirtd, whose domains it migrates)."""
    cli = (sys.executable, "-m", "perfplus_agent.cli", "daemon")
    return Service("perfplus-daemon",
                   (*cli, "--listen", f"0.0.0.0:{DAEMON_PORT}", "--key-file", str(key_file)),
                   ready_cmd=(*cli, "ping", f"127.0.0.1:{DAEMON_PORT}", "--key-file",
                              str(key_file), "--timeout", "2"))


CLUSTER_SERVICES: tuple[Service, ...] = (
    Service("corosync", ("corosync", "-f"), ready_cmd=("corosync-cfgtool", "-s"),
            cluster=True),
    Service("pacemakerd", ("pacemakerd",), cluster=True),
)
PACEMAKER_ENV = {
    "PCMK_logfile": "/var/log/pacemaker/pacemaker.log",
    "PCMK_logfacility": "none",  # no syslog daemon in a lab host
    "PCMK_logpriority": "notice",
    "PCMK_blackbox": "no",
    "HA_RSCTMP": "/run/resource-agents",
}


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} hostinit: {msg}", flush=True)


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, timeout=10)


def setup_filesystem(host_dir: Path, lab_dir: Path, cluster: bool) -> None:
    """Private /run, libvirt (and cluster) directories, /var/log, /etc/hosts, /dev/shm, and
    the lab's agents overlaid on the OCF and fence-agent directories."""
    # Every new mount namespace inherits copies of /run/netns/* mounts, and those copies would
    # keep other namespaces alive after 'ip netns del'. Drop them before hiding /run.
    if os.path.isdir("/run/netns"):
        subprocess.run(["umount", "-R", "-l", "/run/netns"], check=False, timeout=10,
                       stderr=subprocess.DEVNULL)
    mount("--bind", str(lab_dir / "hosts"), "/etc/hosts")
    mount("-t", "tmpfs", "-o", "mode=1777,size=64m", "tmpfs", "/dev/shm")
    dirs = list(PRIVATE_DIRS) + (list(CLUSTER_DIRS) if cluster else [])
    # /run last: the lab's state directory may itself live under /run.
    for inside, sub in sorted(dirs, key=lambda d: d[0] == "/run"):
        mount("--bind", str(host_dir / sub), inside)
    if cluster:
        for inside, extra in ((OCF_DIR, lab_dir / "ocf" / "resource.d"),
                              (SBIN_DIR, lab_dir / "sbin")):
            mount("-t", "overlay", "overlay", "-o", f"lowerdir={extra}:{inside}", inside)
        for path in ("/run/crm", "/run/resource-agents", "/var/log/pacemaker",
                     "/var/log/corosync"):
            os.makedirs(path, exist_ok=True)
        subprocess.run(["chown", "hacluster:haclient", "/run/crm", "/var/log/pacemaker"],
                       check=True, timeout=10)


def _unblock_signals() -> None:
    """In a child: undo the signal mask init runs with (daemons need their signals)."""
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _ready(service: Service) -> bool:
    if service.ready_path is not None:
        return os.path.exists(service.ready_path)
    if service.ready_cmd is not None:
        return subprocess.run(service.ready_cmd, capture_output=True, timeout=5,
                              check=False).returncode == 0
    return True


def start(service: Service, env: dict[str, str]) -> subprocess.Popen[bytes]:
    logf = open(f"/var/log/{service.name}.out", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(service.argv, env=env, stdout=logf, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL,
                            preexec_fn=_unblock_signals)  # noqa: PLW1509 - no threads here
    logf.close()
    deadline = time.monotonic() + service.ready_timeout
    while not _ready(service):
        if proc.poll() is not None:
            raise RuntimeError(f"{service.name} exited with {proc.returncode} while starting")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{service.name} not ready after {service.ready_timeout:.0f} s")
        time.sleep(0.05)
    log(f"{service.name} ready (pid {proc.pid})")
    return proc


def stop(name: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
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
    """The supervising loop: reap every child at once, act on the control signals.

    Reaping must be immediate: libvirt decides that a QEMU it stopped is gone with
    ``kill(pid, 0)``, which still succeeds on a zombie, so a slow reaper slows down every
    migration's end and every stop.
    """

    WAKE_SIGNALS = (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP,
                    signal.SIGUSR1)

    def __init__(self, services: tuple[Service, ...], env: dict[str, str]) -> None:
        self.services = services
        self.env = env
        self.running: dict[str, subprocess.Popen[bytes]] = {}
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
            for proc in self.running.values():
                if proc.pid == pid:
                    proc.returncode = os.waitstatus_to_exitcode(status)  # Popen can't see it

    def start_missing(self) -> None:
        for service in self.services:
            proc = self.running.get(service.name)
            if proc is None or proc.poll() is not None:
                self.running[service.name] = start(service, self.env)

    def stop_services(self, cluster_only: bool) -> None:
        for service in reversed(self.services):
            proc = self.running.get(service.name)
            if proc is not None and (service.cluster or not cluster_only):
                log(f"stopping {service.name}")
                stop(service.name, proc)

    def loop(self) -> None:
        while True:
            info = signal.sigtimedwait(self.WAKE_SIGNALS, 5.0)
            self.reap()
            if info is None or info.si_signo == signal.SIGCHLD:
                continue
            if info.si_signo == signal.SIGHUP:
                self.stop_services(cluster_only=True)
            elif info.si_signo == signal.SIGUSR1:
                try:
                    self.start_missing()
                except (OSError, RuntimeError) as exc:
                    log(f"revive failed: {exc}")
            else:
                break
        log("stopping")
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGCHLD])
        self.stop_services(cluster_only=False)
        self.reap()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    cluster = "--cluster" in args
    args = [a for a in args if a != "--cluster"]
    if len(args) != 3 or os.getpid() != 1:
        print("usage: hostinit HOST_DIR LAB_DIR HOSTNAME [--cluster] "
              "(as PID 1 of a new PID namespace)", file=sys.stderr)
        return 2
    host_dir, lab_dir, hostname = Path(args[0]), Path(args[1]), args[2]
    env = {"PATH": CLEAN_PATH, "HOME": "/root", "LC_ALL": "C"}
    if cluster:
        env |= PACEMAKER_ENV
    services = (*SERVICES, daemon_service(lab_dir / "cluster.key"))
    init = Init(services + (CLUSTER_SERVICES if cluster else ()), env)
    try:
        setup_filesystem(host_dir, lab_dir, cluster)
        socket.sethostname(hostname)
    except (OSError, subprocess.SubprocessError) as exc:
        log(f"setup failed: {exc}")
        return 1
    try:
        init.start_missing()
    except (OSError, RuntimeError) as exc:
        log(f"start failed: {exc}")
        init.stop_services(cluster_only=False)
        return 1
    log("up")
    init.loop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
