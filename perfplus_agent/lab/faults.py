"""The fault suite: a guest under Pacemaker is moved between the cluster lab's nodes again and
again, and each live migration is hit by one fault while it runs.

Faults: the destination's QEMU or libvirt daemon killed, the migration link cut, Pacemaker
killed on the source, the destination fenced, a migration that cannot converge (link shaped
to a trickle) left to hit its deadline, and a second move of the same guest issued while the
first one migrates. After each, the cluster must settle on its own (no cleanup) and then:
exactly one node runs the guest, the one Pacemaker names (or none, and Pacemaker says the
guest is stopped), and its memory checksum holds. While a fault plays out, every host's
libvirt is sampled: two *running* copies at any moment is a double-active guest.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import libvirt

from perfplus_agent.errors import PerfplusError
from perfplus_agent.lab import network
from perfplus_agent.lab.cluster_status import cluster_view
from perfplus_agent.lab.console import ConsoleTimeout
from perfplus_agent.lab.guest_xml import guest_xml
from perfplus_agent.lab.guests import Guests
from perfplus_agent.lab.host_procs import pids_named, qemu_pid
from perfplus_agent.lab.lab import Lab
from perfplus_agent.lab.layout import HostLayout
from perfplus_agent.lab.ocf_exec import LAB_AGENT_PARAMS
from perfplus_agent.libvirt_conn import open_connection

__all__ = ["FAULTS", "FaultOutcome", "FaultReport", "format_fault_report", "run_faults"]

VM = "fvm"
MEMORY_MIB = 128
WORKLOAD = "-m 32 -r 500 -s 0.5 -i 0.5"
MIGRATION_SPEED_MIB = 24  # a migration lasts seconds: long enough to be hit mid-way
MIGRATE_TO_TIMEOUT_S = 15  # the non-converging migration is aborted before this
TRICKLE = "1mbit"  # the migration link of a migration that cannot converge
SETTLE_TIMEOUT_S = 150
QEMU_APPEAR_TIMEOUT_S = 60.0  # after a fencing round Pacemaker once took over 30 s to start a move
JOB_END_TIMEOUT_S = 60.0
BOOT_TIMEOUT_S = 60.0
SAMPLE_PERIOD_S = 0.2
STABLE_S = 2.0  # how long a settled placement must hold
NODES = ("h1", "h2", "h3")


@dataclass(frozen=True)
class FaultOutcome:
    """What one injected fault left behind."""

    round: int
    fault: str
    source: str
    target: str
    injected: bool
    running_on: tuple[str, ...]  # hosts whose libvirt runs the guest after settling
    pacemaker_on: tuple[str, ...]  # where Pacemaker says it is active
    max_running: int  # most running copies seen at one moment during the round
    memory_intact: bool | None  # None: runs nowhere, nothing to check
    restarted: bool  # the recovery booted the guest afresh (it did not move or stay live)
    settled: bool
    seconds: float
    detail: str = ""

    @property
    def double_active(self) -> bool:
        return self.max_running > 1 or len(self.running_on) > 1

    @property
    def lost(self) -> bool:
        """The guest runs where Pacemaker does not say, or Pacemaker names a node that does
        not run it, or its memory is damaged."""
        return (set(self.running_on) != set(self.pacemaker_on)
                or self.memory_intact is False)

    @property
    def survived(self) -> bool:
        return self.injected and self.settled and not self.double_active and not self.lost


@dataclass(frozen=True)
class FaultReport:
    outcomes: list[FaultOutcome]
    seconds: float

    @property
    def injected(self) -> int:
        return sum(o.injected for o in self.outcomes)

    @property
    def survived(self) -> int:
        return sum(o.survived for o in self.outcomes)

    @property
    def double_active(self) -> int:
        return sum(o.double_active for o in self.outcomes)

    @property
    def lost(self) -> int:
        return sum(o.lost for o in self.outcomes)

    @property
    def restarted(self) -> int:
        """Rounds whose recovery booted the guest afresh instead of keeping it live."""
        return sum(o.restarted for o in self.outcomes)

    @property
    def stopped(self) -> int:
        """Rounds that ended with the guest stopped (Pacemaker agreeing)."""
        return sum(not o.running_on and not o.pacemaker_on for o in self.outcomes)

    def as_json(self) -> dict[str, object]:
        return {"injected": self.injected, "survived": self.survived,
                "double_active": self.double_active, "lost": self.lost,
                "stopped": self.stopped, "restarted": self.restarted,
                "seconds": round(self.seconds, 1),
                "outcomes": [asdict(o) | {"double_active": o.double_active, "lost": o.lost,
                                          "survived": o.survived} for o in self.outcomes]}


class RunningSampler:
    """Counts, every ``period`` seconds, the hosts whose libvirt runs the guest (running,
    not paused: an incoming migration is paused until it takes over)."""

    def __init__(self, guests: Guests, vm: str, period: float = SAMPLE_PERIOD_S) -> None:
        self.hosts = guests.layout.all_hosts()
        self.vm = vm
        self.period = period
        self.max_running = 0
        self.seen_on: set[tuple[str, ...]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def running_now(self) -> tuple[str, ...]:
        found = []
        for host in self.hosts:
            try:
                conn = open_connection(host.local_uri)
            except PerfplusError:
                continue  # a powered-off host, or its libvirtd killed: runs nothing we see
            try:
                state, _reason = conn.lookupByName(self.vm).state()
                if state == libvirt.VIR_DOMAIN_RUNNING:
                    found.append(host.name)
            except libvirt.libvirtError:
                pass
            finally:
                conn.close()
        return tuple(found)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            now = self.running_now()
            self.max_running = max(self.max_running, len(now))
            if len(now) > 1:
                self.seen_on.add(now)

    def __enter__(self) -> RunningSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


@dataclass
class Round:
    """One move of the guest and the fault that hits it."""

    lab: Lab
    source: str
    target: str
    via: str  # the third node: it issues the commands and is never harmed

    def crm(self, *argv: str, timeout: float = 120.0) -> str:
        return self.lab.run_in(self.via, list(argv), timeout=timeout).stdout

    def host(self, name: str) -> HostLayout:
        return self.lab.layout.host_named(name)

    def source_job_active(self) -> bool:
        try:
            conn = open_connection(self.host(self.source).local_uri)
        except PerfplusError:
            return False
        try:
            return conn.lookupByName(VM).jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE
        except libvirt.libvirtError:
            return False
        finally:
            conn.close()

    def wait_source_job_end(self, timeout: float = JOB_END_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.source_job_active():
            time.sleep(0.2)


# -- the faults -------------------------------------------------------------------------------
# Each one is injected once the destination QEMU exists, and returns a line for the report.

def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it may have ended on its own meanwhile
        os.kill(pid, signal.SIGKILL)


def _kill_dest_qemu(r: Round) -> str:
    pid = qemu_pid(r.host(r.target), VM)
    if pid is None:
        return "the destination QEMU was already gone"
    _kill(pid)
    return f"killed QEMU {pid} on {r.target}"


def _kill_dest_libvirtd(r: Round) -> str:
    pids = pids_named(r.host(r.target), "libvirtd")
    for pid in pids:
        _kill(pid)
    time.sleep(2.0)
    # As systemd's Restart=on-failure would: the host's init starts what is missing.
    os.kill(r.lab.init_pid(r.host(r.target)), signal.SIGUSR1)
    return f"killed libvirtd {pids} on {r.target}, restarted 2 s later"


def _cut_link(r: Round) -> str:
    host = r.host(r.target)
    network.set_link_state(host, up=False)
    try:
        r.wait_source_job_end()
    finally:
        network.set_link_state(host, up=True)
    return f"cut {r.target}'s migration link until the source's job ended"


def _kill_source_pacemaker(r: Round) -> str:
    pids = pids_named(r.host(r.source), "pacemaker", prefix=True)
    for pid in pids:
        _kill(pid)
    return f"killed {len(pids)} Pacemaker daemons on {r.source}"


def _fence_dest(r: Round) -> str:
    r.crm("stonith_admin", "--reboot", r.target, "--timeout", "60", timeout=90)
    return f"fenced {r.target}"


def _never_converges(r: Round) -> str:
    host = r.host(r.source)
    network.shape_host_link(host, TRICKLE)
    try:
        r.wait_source_job_end(MIGRATE_TO_TIMEOUT_S + 30)
    finally:
        network.shape_host_link(host, None)
    return f"{r.source}'s migration link shaped to {TRICKLE} until the migration was aborted"


def _second_move(r: Round) -> str:
    other = r.via
    r.crm("crm", "resource", "move", VM, other)
    return f"moved again, to {other}, while migrating to {r.target}"


FAULTS: dict[str, Callable[[Round], str]] = {
    "kill destination QEMU": _kill_dest_qemu,
    "kill destination libvirtd": _kill_dest_libvirtd,
    "cut migration link": _cut_link,
    "kill Pacemaker on source": _kill_source_pacemaker,
    "fence destination": _fence_dest,
    "non-converging migration": _never_converges,
    "two moves at once": _second_move,
}


# -- the suite --------------------------------------------------------------------------------
def _define(lab: Lab, guests: Guests, say: Callable[[str], None]) -> None:
    spec = guests.prepare(VM, MEMORY_MIB, workload=WORKLOAD, say=say)
    config = lab.layout.shared_dir / f"{VM}.xml"
    config.write_text(guest_xml(spec))
    settings = {**LAB_AGENT_PARAMS, "config": str(config),
                "migration_speed": str(MIGRATION_SPEED_MIB)}
    params = " ".join(f"{k}={v}" for k, v in settings.items())
    lab.run_in("h1", ["sh", "-c",
                      "crm configure rsc_defaults resource-stickiness=100 && "
                      "crm configure property load-threshold=1000% && "
                      f"crm configure primitive {VM} ocf:perfplus:VirtualDomain params {params} "
                      "meta allow-migrate=true failure-timeout=60s "
                      "op start timeout=90s op stop timeout=60s "
                      "op monitor interval=5s timeout=30s "
                      f"op migrate_to timeout={MIGRATE_TO_TIMEOUT_S}s "
                      "op migrate_from timeout=60s"])


def _pacemaker_on(lab: Lab, via: str) -> tuple[str, ...] | None:
    view = cluster_view(lab.init_pid(lab.layout.host_named(via)))
    return view.resources.get(VM, ()) if view else None


def _settle(lab: Lab, guests: Guests, via: str, timeout: float = SETTLE_TIMEOUT_S) -> bool:
    """Within ``timeout``: every node online, Pacemaker with nothing left to do, and its
    placement of the guest equal to libvirt's, unchanged over STABLE_S."""
    deadline = time.monotonic() + timeout
    init_pid = lab.init_pid(lab.layout.host_named(via))
    last: tuple[tuple[str, ...], tuple[str, ...]] | None = None
    since = time.monotonic()
    while time.monotonic() < deadline:
        view = cluster_view(init_pid)
        left = int(deadline - time.monotonic())
        if view is None or not view.dc or set(view.online) != set(NODES) or left < 2:
            time.sleep(1.0)
            continue
        idle = lab.run_in(via, ["crm_resource", "--wait", f"--timeout={min(30, left)}s"],
                          timeout=min(30, left) + 30, check=False).returncode == 0
        now = (_pacemaker_on(lab, via) or (), _running_copies(guests))
        if not idle or set(now[0]) != set(now[1]):
            last = None
        elif now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= STABLE_S:
            return True
        time.sleep(1.0)
    return False


def _revive_stacks(lab: Lab) -> None:
    """A host whose Pacemaker was killed and not fenced gets its stack started again (as
    systemd would restart it); a powered-off host is powered on."""
    for name in NODES:
        host = lab.layout.host_named(name)
        if not lab.is_powered(name):
            lab.power_on(name)
        elif not pids_named(host, "pacemakerd"):
            os.kill(lab.init_pid(host), signal.SIGUSR1)


def _memory_intact(guests: Guests, host_name: str) -> bool:
    """The guest's own checksum of its working set, once its workload runs (a guest that was
    restarted by the recovery is waited for)."""
    host = guests.layout.host_named(host_name)
    console = guests.console(VM, host)
    text = console.log.read_bytes() if console.log.exists() else b""
    boot = text.rfind(b"PERFPLUS-GUEST BOOTED")
    try:
        if boot >= 0:
            console.wait_for(r"^READY ", BOOT_TIMEOUT_S, boot)
        return console.command("v", r"^VERIFY", timeout=30).startswith("VERIFY OK")
    except (ConsoleTimeout, PerfplusError):
        return False


def _running_copies(guests: Guests) -> tuple[str, ...]:
    return tuple(h.name for h in guests.locate(VM))


def _one_round(guests: Guests, number: int, fault: str, *, rng: random.Random,
               say: Callable[[str], None]) -> FaultOutcome:
    t0 = time.monotonic()
    lab = guests.lab
    source = (_pacemaker_on(lab, "h1") or ("h1",))[0]
    others = [n for n in NODES if n != source]
    target = others[number % 2]
    via = others[(number + 1) % 2]
    r = Round(lab, source, target, via)
    consoles = {h.name: guests.console(VM, h) for h in lab.layout.all_hosts()}
    offsets = {name: console.size() for name, console in consoles.items()}
    injected, detail = False, ""
    with RunningSampler(guests, VM) as sampler:
        r.crm("crm", "resource", "move", VM, target)
        deadline = time.monotonic() + QEMU_APPEAR_TIMEOUT_S
        while time.monotonic() < deadline and qemu_pid(r.host(target), VM) is None:
            time.sleep(0.05)
        if qemu_pid(r.host(target), VM) is None:
            detail = f"no migration to {target} started within {QEMU_APPEAR_TIMEOUT_S:.0f} s"
        else:
            time.sleep(rng.uniform(0.3, 1.5))  # somewhere in the first seconds of the copy
            detail = FAULTS[fault](r)
            injected = True
        settled = _settle(lab, guests, via)
        if not settled:
            _revive_stacks(lab)
            settled = _settle(lab, guests, via)
        r.crm("crm", "resource", "clear", VM)  # moves nothing: stickiness keeps it put
        settled = settled and lab.run_in(
            via, ["crm_resource", "--wait", "--timeout=60s"], timeout=90,
            check=False).returncode == 0
    running = _running_copies(guests)
    pacemaker = _pacemaker_on(lab, via) or ()
    intact = _memory_intact(guests, running[0]) if len(running) == 1 else None
    restarted = any("PERFPLUS-GUEST BOOTED" in line for name in running
                    for line in consoles[name].lines(offsets[name])[0])
    outcome = FaultOutcome(number, fault, source, target, injected, running, pacemaker,
                           sampler.max_running, intact, restarted, settled,
                           time.monotonic() - t0,
                           detail + (f"; two running copies seen: {sorted(sampler.seen_on)}"
                                     if sampler.seen_on else ""))
    say(_line(outcome))
    return outcome


def _line(o: FaultOutcome) -> str:
    verdict = "survived" if o.survived else "FAILED"
    where = ",".join(o.running_on) or "nowhere"
    memory = {True: "memory intact", False: "MEMORY BAD", None: "not running"}[o.memory_intact]
    how = "restarted" if o.restarted else "live"
    return (f"#{o.round:<3} {o.fault:27} {o.source}->{o.target}: {verdict}: runs on {where} "
            f"(Pacemaker: {','.join(o.pacemaker_on) or 'stopped'}), {how}, {memory}, "
            f"{o.seconds:.0f} s; {o.detail}")


def run_faults(lab: Lab, say: Callable[[str], None], count: int = 14,
               seed: int = 1) -> FaultReport:
    """Inject ``count`` faults, cycling through FAULTS, into migrations of one guest."""
    if count < 1:
        raise PerfplusError("--count must be at least 1")
    guests = Guests(lab)
    rng = random.Random(seed)
    t0 = time.monotonic()
    _define(lab, guests, say)
    if not _settle(lab, guests, "h1"):
        raise PerfplusError(f"the cluster did not settle after defining {VM}")
    home = (_pacemaker_on(lab, "h1") or ("",))[0]
    if not home:
        raise PerfplusError(f"{VM} did not start")
    guests.wait_booted(VM, lab.layout.host_named(home))
    kinds = list(FAULTS)
    outcomes = []
    for number in range(1, count + 1):
        fault = kinds[(number - 1) % len(kinds)]
        try:
            outcomes.append(_one_round(guests, number, fault, rng=rng, say=say))
        except (PerfplusError, OSError) as exc:  # the round could not be judged: go on
            outcomes.append(FaultOutcome(number, fault, "?", "?", False, (), (), 0, None, False,
                                         False, 0.0, f"the round broke off: {exc}"))
            say(_line(outcomes[-1]))
            _revive_stacks(lab)
            _settle(lab, guests, "h1")
        if len(outcomes[-1].running_on) == 0:
            # Stopped with Pacemaker's agreement: a legitimate end, but the next fault needs
            # a running guest. Failures may have banned it everywhere; that is what cleanup
            # is for (and is reported as the round's outcome already).
            lab.run_in("h1", ["crm", "resource", "cleanup", VM], timeout=120, check=False)
            _settle(lab, guests, "h1")
    return FaultReport(outcomes, time.monotonic() - t0)


def format_fault_report(report: FaultReport) -> str:
    stopped = (f"; {report.stopped} ended with the guest stopped, as Pacemaker says"
               if report.stopped else "")
    return (f"{report.injected} faults injected, {report.survived} survived, "
            f"{report.double_active} double-active, {report.lost} lost "
            f"({report.seconds:.0f} s; the guest kept running live through "
            f"{len(report.outcomes) - report.restarted - report.stopped}, was restarted by "
            f"the recovery after {report.restarted}{stopped})")
