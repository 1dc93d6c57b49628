"""Installing the OCF agents where Pacemaker looks for them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["AGENTS", "agent_script", "install_agents"]

PROVIDER = "perfplus"
AGENTS = {"VirtualDomain": "perfplus_agent.ocf.runner"}
DEFAULT_OCF_ROOT = "/usr/lib/ocf"


def agent_script(module: str, python: str = "/usr/bin/env python3") -> str:
    """The thin executable of an agent (the repository's ``ocf/`` files are these, with the
    generic interpreter line)."""
    return (
        f"#!{python}\n"
        '"""ocf:perfplus:VirtualDomain - drop-in replacement for ocf:heartbeat:VirtualDomain.\n'
        "\n"
        "This file only finds the package and hands over to it; 'perfplus install-agents' "
        "installs a\n"
        "copy whose first line names the Python interpreter that has perfplus-agent installed.\n"
        '"""\n'
        f"from {module} import main\n"
        "\n"
        "main()\n"
    )


def install_agents(ocf_root: str = DEFAULT_OCF_ROOT, python: str | None = None) -> list[Path]:
    """Write every agent into ``<ocf_root>/resource.d/perfplus/``; return the paths."""
    target = Path(ocf_root) / "resource.d" / PROVIDER
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, module in AGENTS.items():
        path = target / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(agent_script(module, python or sys.executable))
        tmp.chmod(0o755)
        os.replace(tmp, path)
        written.append(path)
    return written
