"""Running ocf:perfplus:VirtualDomain inside a simulated host, as Pacemaker would."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from perfplus_agent.lab.guest_xml import guest_xml
from perfplus_agent.lab.guests import Guests
from perfplus_agent.lab.host_procs import pids_named
from perfplus_agent.lab.host_procs import qemu_pid as host_qemu_pid
from perfplus_agent.lab.hosts import wait_libvirt
from perfplus_agent.lab.ocf_exec import LAB_AGENT_PARAMS, OcfRun, run_ocf

LAB_PARAMS = {
    **LAB_AGENT_PARAMS,
    "peers": "h1 h2 h3",
    "autoset_utilization_cpu": "false",
    "autoset_utilization_host_memory": "false",
    "autoset_utilization_hv_memory": "false",
}


def run_agent(guests: Guests, host: str, action: str, params: dict[str, str],
              meta: dict[str, str] | None = None, timeout_s: float = 60.0,
              extra_env: dict[str, str] | None = None) -> OcfRun:
    """Run one action of the agent inside ``host`` with Pacemaker's environment."""
    return run_ocf(guests.lab, host, action, params, meta=meta, timeout_s=timeout_s,
                   extra_env=extra_env)


def domain_config(guests: Guests, name: str, directory: Path, memory_mib: int = 256,
                  workload: str | None = "-m 64 -r 1000 -s 0.5 -i 0.2",
                  power_button: bool = True) -> dict[str, str]:
    """Record a lab guest, write its XML where every host can read it, return the agent's
    parameters for it."""
    spec = guests.prepare(name, memory_mib, workload=workload, power_button=power_button)
    path = directory / f"{name}.xml"
    path.write_text(guest_xml(spec))
    path.chmod(0o644)
    return {**LAB_PARAMS, "config": str(path)}


def start_booted(guests: Guests, host: str, params: dict[str, str], name: str) -> OcfRun:
    """Start through the agent on ``host`` and wait until the guest's workload runs."""
    layout_host = guests.layout.host_named(host)
    offset = guests.console(name, layout_host).size()
    res = run_agent(guests, host, "start", params)
    assert res.rc == 0, res.stderr
    guests.wait_booted(name, layout_host, offset)
    return res


def where(guests: Guests, name: str) -> list[str]:
    return [h.name for h in guests.locate(name)]


def qemu_pid(guests: Guests, host: str, name: str) -> int | None:
    return host_qemu_pid(guests.layout.host_named(host), name)


def daemon_pid(guests: Guests, host: str, comm: str) -> int | None:
    pids = pids_named(guests.layout.host_named(host), comm)
    return pids[0] if pids else None


def freeze(pid: int) -> None:
    os.kill(pid, signal.SIGSTOP)


def thaw(pid: int) -> None:
    os.kill(pid, signal.SIGCONT)


def restart_libvirtd(guests: Guests, host: str, timeout_s: float = 30.0) -> None:
    """Start the host's libvirtd again after a test killed it (QEMUs survive a restart)."""
    layout_host = guests.layout.host_named(host)
    pid = guests.lab.init_pid(layout_host)
    layout_host.libvirt_socket.unlink(missing_ok=True)
    guests.lab.run_in(host, ["libvirtd", "--listen", "--daemon"], timeout=timeout_s)
    wait_libvirt(layout_host, pid, timeout_s)
