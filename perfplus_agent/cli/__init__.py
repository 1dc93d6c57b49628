"""The ``perfplus`` command."""

from __future__ import annotations

import logging
import sys

import click

from perfplus_agent import __version__
from perfplus_agent.cli.agents import install_agents_command
from perfplus_agent.cli.bench import bench
from perfplus_agent.cli.daemon import daemon
from perfplus_agent.cli.lab import lab
from perfplus_agent.errors import PerfplusError

__all__ = ["main"]


@click.group()
@click.version_option(__version__, prog_name="perfplus")
@click.option("-v", "--verbose", is_flag=True, help="Log debug details on stderr.")
def cli(verbose: bool) -> None:
    """perfplus-agent: live migration instead of restarts for Pacemaker-managed QEMU guests."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )


cli.add_command(lab)
cli.add_command(bench)
cli.add_command(install_agents_command)
cli.add_command(daemon)


def main() -> None:
    """Run the CLI; a PerfplusError becomes one line on stderr and exit status 1."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except PerfplusError as exc:
        click.echo(f"perfplus: error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
