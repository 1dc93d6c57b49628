"""``perfplus lab ...``: the simulated hosts, their guests and the demo."""

from __future__ import annotations

import click

from perfplus_agent.lab.lab import Lab
from perfplus_agent.lab.layout import DEFAULT_NAME, LabLayout

__all__ = ["lab"]


def _say(msg: str) -> None:
    click.echo(msg, err=True)


def _lab(name: str, hosts: int | None = None) -> Lab:
    """The lab called ``name``; its host count comes from its record unless given."""
    if hosts is None:
        record = Lab(LabLayout.create(name, 1)).record()
        hosts = record.hosts if record else 3
    return Lab(LabLayout.create(name, hosts), say=_say)


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
def up(name: str, hosts: int, migration_link: str | None) -> None:
    """Bring up (or reuse) the lab's hosts."""
    _lab(name, hosts).up(migration_link)


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
        state = "up" if st.init_alive and st.libvirt_ok else ("no libvirt" if st.init_alive
                                                             else "down")
        click.echo(f"  {st.name:4} {state:10} {' '.join(st.domains) or '-'}")
