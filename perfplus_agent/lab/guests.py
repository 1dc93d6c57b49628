"""Lab guests: create one on a host, find where it runs, talk to its console, migrate it."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import signal
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import libvirt
import psutil

from perfplus_agent.daemon.libvirt_migrate import LOOPBACK
from perfplus_agent.errors import PerfplusError, UsageError
from perfplus_agent.lab.accel import Accel, choose_accel
from perfplus_agent.lab.console import GuestConsole
from perfplus_agent.lab.guest_xml import GuestSpec, console_log_path, guest_xml, serial_socket_path
from perfplus_agent.lab.host_procs import qemu_pid
from perfplus_agent.lab.image import build_image
from perfplus_agent.lab.lab import Lab
from perfplus_agent.lab.layout import HostLayout
from perfplus_agent.libvirt_conn import LibvirtUnreachable, open_connection
from perfplus_agent.migration.live import MigrationRequest, MigrationResult, Progress, live_migrate
from perfplus_agent.qemu.tcgfix import check_migratable, wrapper_path

__all__ = ["Guests", "parse_memory"]

BOOT_TIMEOUT = 60.0
QEMU_OVERHEAD_MIB = 128
MACHINE_RESERVE_MIB = 1024
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,39}$")
_MEM_RE = re.compile(r"^(\d+)\s*([KMG]?)i?B?$", re.I)


def parse_memory(text: str) -> int:
    """MiB from ``256M``, ``1G``, ``262144K`` or a plain number of MiB; UsageError if bad."""
    m = _MEM_RE.match(text.strip())
    if not m:
        raise UsageError(f"bad memory size {text!r}: use e.g. 256M or 1G")
    value, unit = int(m.group(1)), m.group(2).upper()
    mib = {"K": value / 1024, "": value, "M": value, "G": value * 1024}[unit]
    if mib < 64 or mib != int(mib):
        raise UsageError(f"memory size {text!r} must be a whole number of MiB, at least 64M")
    return int(mib)


class Guests:
    """The guests of one lab (which must be up)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.layout = lab.layout
        self._accel_said = False

    # -- records ---------------------------------------------------------------------------
    def _spec_path(self, name: str) -> Path:
        return self.layout.vm_dir / f"{name}.json"

    def spec(self, name: str) -> GuestSpec:
        try:
            return GuestSpec(**json.loads(self._spec_path(name).read_text()))
        except FileNotFoundError:
            known = ", ".join(self.names()) or "none"
            raise UsageError(f"unknown VM {name!r} (lab VMs: {known})") from None

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.layout.vm_dir.glob("*.json"))

    # -- where -----------------------------------------------------------------------------
    def locate(self, name: str) -> list[HostLayout]:
        """Every host on which ``name`` is active (more than one would be a bug to report).
        A powered-off host runs nothing; on a host whose libvirtd is down (killed, or
        restarting) the guest's QEMU process is what counts."""
        found = []
        for host in self.layout.all_hosts():
            if not self.lab.is_powered(host.name):
                continue
            try:
                conn = open_connection(host.local_uri)
            except LibvirtUnreachable:
                if qemu_pid(host, name) is not None:
                    found.append(host)
                continue
            try:
                dom = conn.lookupByName(name)
                if dom.isActive():
                    found.append(host)
            except libvirt.libvirtError:
                pass
            finally:
                conn.close()
        return found

    def where(self, name: str) -> HostLayout:
        """The one host that runs ``name``; PerfplusError when none or several do."""
        self.spec(name)
        hosts = self.locate(name)
        if not hosts:
            raise PerfplusError(f"VM {name!r} runs on no host")
        if len(hosts) > 1:
            raise PerfplusError(f"VM {name!r} runs on {len(hosts)} hosts: "
                                + ", ".join(h.name for h in hosts))
        return hosts[0]

    def console(self, name: str, host: HostLayout | None = None) -> GuestConsole:
        host = host or self.where(name)
        return GuestConsole(log=host.path(console_log_path(name)),
                            socket=host.path(serial_socket_path(name)))

    # -- create / destroy --------------------------------------------------------------------
    def create(
        self,
        name: str,
        host_name: str,
        memory_mib: int,
        *,
        workload: str | None = None,
        vcpus: int = 1,
        emulator: str | None = None,
        wait: bool = True,
        say: Callable[[str], None] | None = None,
    ) -> GuestSpec:
        """Define and start a transient guest on ``host_name``; wait for it to boot."""
        host = self.layout.host_named(host_name)
        spec = self.prepare(name, memory_mib, workload=workload, vcpus=vcpus,
                            emulator=emulator, say=say)
        console = self.console(name, host)
        offset = console.size()
        conn = open_connection(host.local_uri)
        try:
            conn.createXML(guest_xml(spec), 0)
        except libvirt.libvirtError as exc:
            self._spec_path(name).unlink()
            raise PerfplusError(f"starting {name} on {host.name} failed: "
                                f"{exc.get_error_message()}") from None
        finally:
            conn.close()
        if wait:
            self.wait_booted(name, host, offset)
        return spec

    @contextlib.contextmanager
    def temporary(self, name: str, host_name: str, memory_mib: int, *,
                  workload: str | None = None,
                  say: Callable[[str], None] | None = None) -> Iterator[GuestSpec]:
        """A guest created for the ``with`` block and destroyed after it, wherever it runs."""
        spec = self.create(name, host_name, memory_mib, workload=workload, say=say)
        try:
            yield spec
        finally:
            self.destroy(name)

    def wait_booted(self, name: str, host: HostLayout, offset: int = 0) -> None:
        """Wait for the guest's workload (or, without one, its network) to come up."""
        marker = r"^READY " if self.spec(name).workload else r"^INIT net"
        self.console(name, host).wait_for(marker, BOOT_TIMEOUT, offset)

    def prepare(
        self,
        name: str,
        memory_mib: int,
        *,
        workload: str | None = None,
        vcpus: int = 1,
        emulator: str | None = None,
        power_button: bool = True,
        say: Callable[[str], None] | None = None,
    ) -> GuestSpec:
        """Record a new guest (image built, address allocated) without starting it; its
        domain XML is ``guest_xml(spec)``."""
        self.lab.require_up()
        if not _NAME_RE.match(name):
            raise UsageError(f"bad VM name {name!r}: letters, digits, '_', '.', '-' (max 40)")
        if self._spec_path(name).exists():
            where = ", ".join(h.name for h in self.locate(name)) or "no host"
            raise UsageError(f"VM {name!r} exists already (running on {where})")
        _check_fits(memory_mib)
        image = build_image(say)
        accel = choose_accel(image)
        if accel.name == "tcg" and say and not self._accel_said:
            say(f"using TCG (software emulation): {accel.reason}")
            self._accel_said = True
        spec = GuestSpec(
            name=name, memory_mib=memory_mib, ip=self._free_ip(), kernel=str(image.kernel),
            initrd=str(image.initrd), emulator=emulator or str(wrapper_path()),
            domain_type=Accel(accel.name, "").domain_type, vcpus=vcpus, workload=workload,
            power_button=power_button,
        )
        self.layout.vm_dir.mkdir(parents=True, exist_ok=True)
        self._spec_path(name).write_text(json.dumps(asdict(spec), indent=2) + "\n")
        return spec

    def _free_ip(self) -> str:
        used = {self.spec(n).ip for n in self.names()}
        for slot in range(100):
            ip = self.layout.guest_addr(slot)
            if ip not in used:
                return ip
        raise UsageError("no free guest address left in this lab (100 guests)")

    def destroy(self, name: str) -> None:
        """Stop ``name`` wherever it runs and forget it."""
        self.spec(name)
        for host in self.locate(name):
            try:
                conn = open_connection(host.local_uri)
            except LibvirtUnreachable:
                pid = qemu_pid(host, name)
                if pid is not None:
                    os.kill(pid, signal.SIGKILL)
                continue
            try:
                conn.lookupByName(name).destroy()
            except libvirt.libvirtError:
                pass
            finally:
                conn.close()
        self._spec_path(name).unlink(missing_ok=True)

    # -- migrate -----------------------------------------------------------------------------
    def migrate(
        self,
        name: str,
        to: str,
        bandwidth_mib: int = 0,
        timeout_s: float = 300.0,
        on_progress: Progress | None = None,
        *,
        through: str | None = None,
    ) -> MigrationResult:
        """Live-migrate ``name`` to host ``to`` over the migration network. ``through``: a
        local proxy's migration URI instead, ``tcp://127.0.0.1:PORT`` or ``unix:///PATH``;
        the destination QEMU listens on the same address in its own host (a proxy on each
        host carries the stream in between)."""
        dest = self.layout.host_named(to)
        src = self.where(name)
        if src == dest:
            raise UsageError(f"VM {name!r} already runs on {dest.name}")
        src_conn = open_connection(src.local_uri)
        dest_conn = open_connection(dest.local_uri)
        try:
            dom = src_conn.lookupByName(name)
            check_migratable(dom)
            req = MigrationRequest(dest_uri=dest.peer_uri, migrate_uri=f"tcp://{dest.mig_name}",
                                   bandwidth_mib=bandwidth_mib, timeout_s=timeout_s)
            if through is not None:
                listen = {libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS: LOOPBACK}
                req = dataclasses.replace(
                    req, migrate_uri=through,
                    extra_params=listen if through.startswith("tcp:") else None)
            return live_migrate(dom, req, dest_conn=dest_conn, on_progress=on_progress)
        finally:
            src_conn.close()
            dest_conn.close()


def _check_fits(memory_mib: int) -> None:
    available = psutil.virtual_memory().available // 2**20
    need = memory_mib + QEMU_OVERHEAD_MIB + MACHINE_RESERVE_MIB
    if need > available:
        raise UsageError(
            f"a {memory_mib} MiB guest does not fit: this machine has {available} MiB available "
            f"and keeps {MACHINE_RESERVE_MIB} MiB in reserve"
        )
