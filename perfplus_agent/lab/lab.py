"""Bring a lab up, report on it, and tear it down without leaving anything behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import libvirt

from perfplus_agent.daemon.keys import generate_key_file
from perfplus_agent.errors import PerfplusError
from perfplus_agent.lab import netns, network, preflight
from perfplus_agent.lab.cluster_config import prepare_cluster
from perfplus_agent.lab.cluster_status import wait_online
from perfplus_agent.lab.host_config import prepare_host_dirs
from perfplus_agent.lab.hostinit import CLEAN_PATH
from perfplus_agent.lab.hosts import enter_argv, kill_host, start_host, wait_libvirt
from perfplus_agent.lab.layout import HostLayout, LabLayout
from perfplus_agent.lab.state import HostRecord, LabRecord, lab_lock, load_record, save_record
from perfplus_agent.libvirt_conn import open_connection
from perfplus_agent.proc import run
from perfplus_agent.qemu.tcgfix import wrapper_path

__all__ = ["HostStatus", "Lab"]

Say = Callable[[str], None]


def _silent(_msg: str) -> None:
    pass


@dataclass
class HostStatus:
    """What ``lab status`` reports for one host."""

    name: str
    init_alive: bool
    libvirt_ok: bool
    domains: list[str]


class Lab:
    """One lab, addressed by its layout; every method is safe to call on a half-built lab."""

    def __init__(self, layout: LabLayout, say: Say = _silent) -> None:
        self.layout = layout
        self.say = say

    # -- queries -------------------------------------------------------------------------
    def record(self) -> LabRecord | None:
        return load_record(self.layout.state_file)

    def require_up(self) -> LabRecord:
        """The record of a lab that is up; PerfplusError saying what to do otherwise."""
        record = self.record()
        if record is None or record.phase != "up":
            raise PerfplusError(f"lab {self.layout.name!r} is not up: run 'perfplus lab up'")
        return record

    def init_pid(self, host: HostLayout) -> int:
        rec = self.require_up().host(host.name)
        if rec is None or rec.init_pid is None or not netns.pid_in_netns(rec.init_pid, host.netns):
            raise PerfplusError(f"host {host.name} is down")
        return rec.init_pid

    def run_in(self, host_name: str, argv: list[str], *, env: dict[str, str] | None = None,
               timeout: float = 120.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside a host (all its namespaces), with the host's clean PATH."""
        pid = self.init_pid(self.layout.host_named(host_name))
        return run(enter_argv(pid, argv), timeout=timeout, check=check,
                   env={"PATH": CLEAN_PATH, **(env or {})})

    def status(self) -> list[HostStatus]:
        record = self.record()
        result = []
        for host in self.layout.all_hosts():
            rec = record.host(host.name) if record else None
            alive = bool(rec and rec.init_pid and netns.pid_in_netns(rec.init_pid, host.netns))
            domains: list[str] = []
            ok = False
            if alive:
                try:
                    conn = open_connection(host.local_uri)
                    domains = sorted(d.name() for d in conn.listAllDomains())
                    conn.close()
                    ok = True
                except (PerfplusError, libvirt.libvirtError):
                    ok = False
            result.append(HostStatus(host.name, alive, ok, domains))
        return result

    def healthy(self) -> bool:
        record = self.record()
        return bool(record and record.phase == "up"
                    and all(s.init_alive and s.libvirt_ok for s in self.status()))

    # -- up ------------------------------------------------------------------------------
    def up(self, migration_link: str | None = None, cluster: bool = False) -> bool:
        """Build the lab (with corosync and Pacemaker on every host when ``cluster``);
        return False when a healthy lab of the same shape was reused."""
        preflight.require_root("perfplus lab")
        preflight.require(preflight.LAB_TOOLS + (preflight.CLUSTER_TOOLS if cluster else ()))
        if migration_link is not None:
            network.parse_rate(migration_link)  # reject a bad rate before building anything
        with lab_lock(self.layout.state_dir):
            if self._reuse_or_clean(migration_link, cluster):
                return False
            try:
                self._build(migration_link, cluster)
            except BaseException:
                self.say("lab up failed: removing what was built")
                self._teardown()
                raise
        return True

    def _reuse_or_clean(self, migration_link: str | None, cluster: bool) -> bool:
        record = self.record()
        if (record and record.hosts == self.layout.hosts and record.cluster == cluster
                and self.healthy()):
            self.say(f"lab {self.layout.name!r} is already up with {record.hosts} hosts: "
                     "reusing it")
            if record.migration_link != migration_link:
                network.shape_migration_link(self.layout, migration_link)
                record.migration_link = migration_link
                save_record(self.layout.state_file, record)
            return True
        leftovers = [n for n in netns.listing() if self.layout.owns_netns(n)]
        if record or leftovers or self.layout.state_dir.exists():
            what = f"phase {record.phase!r}, {record.hosts} hosts" if record else "no record"
            self.say(f"lab {self.layout.name!r}: cleaning leftovers of an earlier lab ({what})")
            self._teardown()
        return False

    def _build(self, migration_link: str | None, cluster: bool) -> None:
        lay = self.layout
        t0 = time.monotonic()
        record = LabRecord(name=lay.name, hosts=lay.hosts, migration_link=migration_link,
                           cluster=cluster)
        lay.state_dir.mkdir(parents=True, exist_ok=True)
        save_record(lay.state_file, record)
        for ns in lay.namespaces():
            record.namespaces.append(ns)  # recorded before it exists: a crash leaves a trail
            save_record(lay.state_file, record)
            netns.add(ns)
        network.build(lay)
        network.shape_migration_link(lay, migration_link)
        lay.hosts_file.write_text(lay.hosts_entries())
        lay.vm_dir.mkdir(exist_ok=True)
        lay.shared_dir.mkdir(exist_ok=True)
        generate_key_file(lay.cluster_key)
        for host in lay.all_hosts():
            prepare_host_dirs(host)
        if cluster:
            prepare_cluster(lay)
            record.switch_pid = _start_switch(lay)
            save_record(lay.state_file, record)
        for host in lay.all_hosts():
            record.host_records.append(HostRecord(name=host.name, netns=host.netns))
            save_record(lay.state_file, record)
            record.host_records[-1].init_pid = start_host(lay, host, cluster)
            save_record(lay.state_file, record)
        for host, rec in zip(lay.all_hosts(), record.host_records, strict=True):
            assert rec.init_pid is not None
            wait_libvirt(host, rec.init_pid)
        self._warm_emulator_probe()
        if cluster:
            first = record.host_records[0].init_pid
            assert first is not None
            wait_online(first, [h.name for h in lay.all_hosts()])
        record.phase = "up"
        save_record(lay.state_file, record)
        what = "cluster nodes" if cluster else "hosts"
        self.say(f"lab {lay.name!r} up: {lay.hosts} {what} in {time.monotonic() - t0:.1f} s")

    # -- power (the lab's fencing acts through these) ------------------------------------
    def is_powered(self, host_name: str) -> bool:
        host = self.layout.host_named(host_name)
        rec = self.require_up().host(host.name)
        return bool(rec and rec.init_pid and netns.pid_in_netns(rec.init_pid, host.netns))

    def power_off(self, host_name: str) -> None:
        """Cut the host's power: every process of it dies at once."""
        host = self.layout.host_named(host_name)
        with lab_lock(self.layout.state_dir):
            record = self.require_up()
            rec = record.host(host.name)
            assert rec is not None
            kill_host(host, rec.init_pid)
            rec.init_pid = None
            save_record(self.layout.state_file, record)

    def power_on(self, host_name: str) -> None:
        """Boot the host again (its daemons; guests stay off, as after a real power cut)."""
        host = self.layout.host_named(host_name)
        with lab_lock(self.layout.state_dir):
            record = self.require_up()
            rec = record.host(host.name)
            assert rec is not None
            if rec.init_pid and netns.pid_in_netns(rec.init_pid, host.netns):
                return
            netns.kill_all(host.netns)  # stragglers of the dead host
            rec.init_pid = start_host(self.layout, host, record.cluster)
            save_record(self.layout.state_file, record)
        wait_libvirt(host, rec.init_pid)

    def _warm_emulator_probe(self) -> None:
        """libvirt probes each QEMU binary once per daemon (~1 s under TCG): the wrapper when a
        guest starts, the default binary when asked for the QEMU version. Do both now, in
        parallel, so that no guest start or migration pays for it."""
        emulator = str(wrapper_path())

        def probe(host: HostLayout) -> None:
            conn = open_connection(host.local_uri)
            try:
                conn.getVersion()
                conn.getDomainCapabilities(emulator, "x86_64", None, "qemu", 0)
            finally:
                conn.close()

        with ThreadPoolExecutor(max_workers=self.layout.hosts) as pool:
            list(pool.map(probe, self.layout.all_hosts()))

    # -- down ----------------------------------------------------------------------------
    def down(self) -> list[str]:
        """Remove everything of the lab; return what was removed (empty if nothing was)."""
        preflight.require_root("perfplus lab")
        with lab_lock(self.layout.state_dir):
            removed = self._teardown()
        lock = self.layout.state_dir.parent / f".{self.layout.name}.lock"
        lock.unlink(missing_ok=True)
        for parent in (self.layout.root, self.layout.root.parent):
            with contextlib.suppress(OSError):  # only when no other lab is left
                parent.rmdir()
        return removed

    def _teardown(self) -> list[str]:
        lay = self.layout
        removed: list[str] = []
        record = None
        try:
            record = self.record()
        except PerfplusError as exc:
            self.say(str(exc))
        if record:
            record.phase = "tearing-down"
            save_record(lay.state_file, record)
            if record.switch_pid:  # first, or a fencing could power a host back on
                _stop_switch(record.switch_pid, lay)
        pids = {h.name: h.init_pid for h in record.host_records} if record else {}
        for host in lay.all_hosts() if record is None else _hosts_of(lay, record):
            if netns.exists(host.netns):
                kill_host(host, pids.get(host.name))
        names = set(record.namespaces if record else [])
        names |= {n for n in netns.listing() if lay.owns_netns(n)}
        for ns in sorted(names):
            if netns.exists(ns):
                netns.kill_all(ns)
                netns.delete(ns)
                removed.append(f"netns {ns}")
        if lay.state_dir.exists():
            shutil.rmtree(lay.state_dir)
            removed.append(f"state {lay.state_dir}")
        return removed


def _hosts_of(lay: LabLayout, record: LabRecord) -> list[HostLayout]:
    """Hosts named in the record (its host count may differ from the layout's)."""
    return [LabLayout(lay.name, record.hosts, lay.root).host(i) for i in range(1, record.hosts + 1)]


def _start_switch(lay: LabLayout) -> int:
    """Start the lab's power switch daemon (it outlives this process, like the hosts)."""
    log = open(lay.state_dir / "powerswitch.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen([sys.executable, "-m", "perfplus_agent.lab.powerswitch", lay.name,
                             str(lay.root)], stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    deadline = time.monotonic() + 10
    while not lay.power_socket.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise PerfplusError(f"the lab power switch did not start; see {lay.state_dir}"
                                "/powerswitch.log")
        time.sleep(0.02)
    return proc.pid


def _stop_switch(pid: int, lay: LabLayout) -> None:
    """Kill the switch, after checking that the PID is still ours."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmdline = fh.read()
    except OSError:
        return
    if b"perfplus_agent.lab.powerswitch" in cmdline and lay.name.encode() in cmdline:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
