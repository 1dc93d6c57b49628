"""``perfplus lab ...``: the simulated hosts, their guests and the demo."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import click

from perfplus_agent.cli.reporting import json_option, write_json
from perfplus_agent.errors import UsageError
from perfplus_agent.lab import network
from perfplus_agent.lab.demo import run_demo
from perfplus_agent.lab.faults import format_fault_report, run_faults
from perfplus_agent.lab.guests import Guests, parse_memory
from perfplus_agent.lab.hosts import enter_argv
from perfplus_agent.lab.image import build_image
from perfplus_agent.lab.lab import Lab
from perfplus_agent.lab.layout import DEFAULT_NAME, LabLayout
from perfplus_agent.lab.maintenance import METHODS, format_report
from perfplus_agent.migration.jobstats import JobStats

__all__ = ["lab"]


def _say(msg: str) -> None:
    click.echo(msg, err=True)


def _lab(name: str, hosts: int | None = None) -> Lab:
    """The lab called ``name``; its host count comes from its record unless given."""
    if hosts is None:
        record = Lab(LabLayout.create(name, 1)).record()
        hosts = record.hosts if record else 3
    return Lab(LabLayout.create(name, hosts), say=_say)


def _guests(name: str) -> Guests:
    the_lab = _lab(name)
    the_lab.require_up()
    return Guests(the_lab)


name_option = click.option(
    "--name", default=DEFAULT_NAME, show_default=True, envvar="PERFPLUS_LAB",
    help="Lab name: the prefix of its namespaces (env PERFPLUS_LAB).",
)


@click.group()
def lab() -> None:
    """Simulated hosts on this machine (namespaces + libvirtd + QEMU guests)."""


@lab.command()
@name_option
@click.option("--hosts", default=3, show_default=True, help="Number of simulated hosts.")
@click.option("--migration-link", metavar="RATE", default=None,
              help="Shape the migration network, e.g. 1gbit or 32mibps (default: unshaped).")
@click.option("--cluster", is_flag=True,
              help="Also run corosync and Pacemaker on every host, with lab fencing.")
def up(name: str, hosts: int, migration_link: str | None, cluster: bool) -> None:
    """Bring up (or reuse) the lab's hosts."""
    _lab(name, hosts).up(migration_link, cluster=cluster)


@lab.command()
@name_option
def down(name: str) -> None:
    """Remove every namespace, process, mount and file of the lab."""
    removed = _lab(name).down()
    _say(f"lab {name!r} down: removed {len(removed)} items" if removed
         else f"lab {name!r}: nothing to remove")


@lab.command()
@name_option
def status(name: str) -> None:
    """Show the lab's hosts and the guests each runs."""
    the_lab = _lab(name)
    record = the_lab.record()
    if record is None:
        click.echo(f"lab {name!r}: not up")
        return
    link = record.migration_link or "unshaped"
    click.echo(f"lab {name!r}: {record.phase}, {record.hosts} hosts, migration link {link}")
    for st in the_lab.status():
        state = "up" if st.init_alive and st.libvirt_ok else (
            "no libvirt" if st.init_alive else "down")
        click.echo(f"  {st.name:4} {state:10} {' '.join(st.domains) or '-'}")


@lab.command()
@click.option("--force", is_flag=True, help="Rebuild even when a cached image exists.")
def image(force: bool) -> None:
    """Build (once) and cache the guest image; print its paths."""
    img = build_image(_say, force=force)
    click.echo(f"kernel {img.kernel}\ninitrd {img.initrd}")


@lab.command(name="exec", context_settings={"ignore_unknown_options": True})
@name_option
@click.argument("host")
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(name: str, host: str, argv: tuple[str, ...]) -> None:
    """Run a command inside HOST (e.g. 'perfplus lab exec h1 virsh list')."""
    the_lab = _lab(name)
    pid = the_lab.init_pid(the_lab.layout.host_named(host))
    full = enter_argv(pid, list(argv))
    os.execvp(full[0], full)


@lab.command()
@name_option
@click.option("--rate", metavar="RATE", help="Shape the migration network (e.g. 100mbit).")
@click.option("--unshaped", is_flag=True, help="Remove the shaping.")
@click.option("--cut", "cut_host", metavar="HOST", help="Unplug HOST's migration link.")
@click.option("--heal", "heal_host", metavar="HOST", help="Plug HOST's migration link back.")
def link(*, name: str, rate: str | None, unshaped: bool, cut_host: str | None,
         heal_host: str | None) -> None:
    """Shape, cut or heal the migration network."""
    the_lab = _lab(name)
    record = the_lab.require_up()
    if rate or unshaped:
        network.shape_migration_link(the_lab.layout, None if unshaped else rate)
        _say(f"migration link: {'unshaped' if unshaped else rate} (was "
             f"{record.migration_link or 'unshaped'})")
    for host, up_ in ((cut_host, False), (heal_host, True)):
        if host:
            network.set_link_state(the_lab.layout.host_named(host), up_)
            _say(f"{host}: migration link {'up' if up_ else 'cut'}")


@lab.command()
@name_option
@click.argument("action", type=click.Choice(["off", "on", "reboot", "status"]))
@click.argument("host")
def power(name: str, action: str, host: str) -> None:
    """Power a host off or on, as the lab's fencing does (off kills its guests too)."""
    the_lab = _lab(name)
    if action == "status":
        click.echo("on" if the_lab.is_powered(host) else "off")
        return
    if action in ("off", "reboot"):
        the_lab.power_off(host)
    if action in ("on", "reboot"):
        the_lab.power_on(host)
    _say(f"{host}: powered {'on' if action != 'off' else 'off'}")


@lab.command()
@name_option
@click.argument("action", type=click.Choice(["stop", "start"]))
@click.argument("host")
def stack(name: str, action: str, host: str) -> None:
    """Stop or start only the cluster stack of a host (its guests keep running)."""
    the_lab = _lab(name)
    pid = the_lab.init_pid(the_lab.layout.host_named(host))
    os.kill(pid, signal.SIGHUP if action == "stop" else signal.SIGUSR1)
    _say(f"{host}: cluster stack {action} requested")


@lab.group()
def vm() -> None:
    """Lab guests."""


@vm.command(name="create")
@name_option
@click.argument("vm_name")
@click.option("--host", "host", default="h1", show_default=True)
@click.option("--memory", default="256M", show_default=True, help="Guest RAM, e.g. 256M, 1G.")
@click.option("--vcpus", default=1, show_default=True)
@click.option("--workload", default=None, metavar="ARGS",
              help="Run the memory workload with these dirtier arguments, e.g. '-m 64 -r 2000'.")
@click.option("--emulator", default=None, hidden=True,
              help="Emulator path (tests use it to run a guest without the TCG workaround).")
def vm_create(*, name: str, vm_name: str, host: str, memory: str, vcpus: int,
              workload: str | None, emulator: str | None) -> None:
    """Define and start a guest on a host, and wait for it to boot."""
    spec = _guests(name).create(vm_name, host, parse_memory(memory), workload=workload,
                                vcpus=vcpus, emulator=emulator, say=_say)
    click.echo(f"{vm_name} running on {host}, address {spec.ip}")


@vm.command(name="list")
@name_option
def vm_list(name: str) -> None:
    """Show every guest and where it runs."""
    guests = _guests(name)
    for vm_name in guests.names():
        hosts = ", ".join(h.name for h in guests.locate(vm_name)) or "not running"
        click.echo(f"{vm_name:12} {guests.spec(vm_name).ip:14} {hosts}")


@vm.command(name="destroy")
@name_option
@click.argument("vm_name")
def vm_destroy(name: str, vm_name: str) -> None:
    """Stop a guest wherever it runs and forget it."""
    _guests(name).destroy(vm_name)


@vm.command(name="console")
@name_option
@click.argument("vm_name")
@click.argument("command")
@click.option("--reply", default=r"^\S", show_default=True, help="Regex of the reply line.")
def vm_console(name: str, vm_name: str, command: str, reply: str) -> None:
    """Send COMMAND to the guest's workload (v, c, p, r, ...) and print its reply."""
    click.echo(_guests(name).console(vm_name).command(command, reply))


def _progress_printer() -> Callable[[JobStats], None]:
    tty = sys.stderr.isatty()

    def show(s: JobStats) -> None:
        line = (f"  iteration {s.memory_iteration}: {s.progress * 100:5.1f}% of "
                f"{s.data_total / 2**20:.0f} MiB, {s.memory_bps * 8 / 1e6:.0f} Mbit/s, "
                f"dirty {s.memory_dirty_rate} pages/s")
        click.echo(("\r" + line) if tty else line, err=True, nl=not tty)

    return show


@lab.command()
@name_option
@click.argument("vm_name")
@click.option("--to", "to", required=True, help="Destination host.")
@click.option("--bandwidth", default=0, help="Limit in MiB/s (0: none).")
@click.option("--timeout", default=300.0, show_default=True, help="Abort after this many s.")
def migrate(name: str, vm_name: str, to: str, bandwidth: int, timeout: float) -> None:
    """Live-migrate a guest to another host and print the job statistics."""
    if bandwidth < 0:
        raise UsageError("--bandwidth must be 0 (unlimited) or a positive MiB/s")
    guests = _guests(name)
    src = guests.where(vm_name)
    result = guests.migrate(vm_name, to, bandwidth_mib=bandwidth, timeout_s=timeout,
                            on_progress=_progress_printer())
    if sys.stderr.isatty():
        click.echo("", err=True)
    s = result.stats
    click.echo(f"{vm_name}: {src.name} -> {to} in {result.wall_s:.2f} s")
    click.echo(f"  downtime        {s.downtime_ms} ms")
    click.echo(f"  total time      {s.time_elapsed_ms} ms (setup {s.setup_ms} ms)")
    click.echo(f"  memory sent     {s.memory_processed / 2**20:.1f} MiB of "
               f"{s.memory_total / 2**20:.0f} MiB ({s.memory_normal_pages} pages, "
               f"{s.memory_constant_pages} zero pages)")
    click.echo(f"  iterations      {s.memory_iteration}")


method_option = click.option(
    "--method", type=click.Choice(list(METHODS)), default="crm node standby h1",
    show_default=True, help="How h1 is emptied.")


@lab.command()
@click.option("--vms", default=8, show_default=True, help="Guests to evacuate from h1.")
@method_option
@click.option("--keep", is_flag=True, help="Leave the lab up afterwards.")
def demo(vms: int, method: str, keep: bool) -> None:
    """A 3-node cluster, guests on h1, 'crm node standby h1': every guest moves live."""
    if not 1 <= vms <= 8:
        raise UsageError("--vms must be between 1 and 8")
    click.echo(format_report(run_demo(_say, vms=vms, keep=keep, method=method)))


@lab.command()
@click.option("--name", default="faults", show_default=True,
              help="Name of the cluster lab the faults run in (brought up if needed).")
@click.option("--count", default=14, show_default=True,
              help="Faults to inject (the seven kinds in turn).")
@click.option("--seed", default=1, show_default=True, help="Seed of the injection timing.")
@click.option("--keep", is_flag=True, help="Leave the lab up afterwards.")
@json_option
def faults(name: str, count: int, seed: int, keep: bool, json_path: Path | None) -> None:
    """Faults during live migrations under Pacemaker; exits 1 unless every one is survived."""
    if count < 1:
        raise UsageError("--count must be at least 1")
    the_lab = _lab(name, 3)
    if the_lab.record() is not None:
        _say(f"removing what is left of an earlier lab {name!r} first")
        the_lab.down()
    the_lab.up(cluster=True)
    try:
        report = run_faults(the_lab, _say, count=count, seed=seed)
    finally:
        if keep:
            _say(f"lab {name!r} kept: 'perfplus lab down --name {name}' removes it")
        else:
            the_lab.down()
    click.echo(format_fault_report(report))
    write_json(json_path, "faults", {k: v for k, v in report.as_json().items()
                                     if k != "outcomes"}, report.as_json())
    if report.survived != len(report.outcomes):
        raise SystemExit(1)
