"""``perfplus install-agents``: put the OCF agents where Pacemaker finds them."""

from __future__ import annotations

import click

from perfplus_agent.ocf.install import DEFAULT_OCF_ROOT, install_agents

__all__ = ["install_agents_command"]


@click.command(name="install-agents")
@click.option("--ocf-root", default=DEFAULT_OCF_ROOT, show_default=True,
              help="OCF root; agents go to <root>/resource.d/perfplus/.")
def install_agents_command(ocf_root: str) -> None:
    """Install ocf:perfplus:VirtualDomain (bound to this Python interpreter)."""
    for path in install_agents(ocf_root):
        click.echo(f"installed {path}")
