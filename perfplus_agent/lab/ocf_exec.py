"""Run ocf:perfplus:VirtualDomain inside a simulated host with the environment Pacemaker
would give it (for tests and benchmarks; the cluster lab runs it through Pacemaker itself)."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass

from perfplus_agent.lab.hostinit import CLEAN_PATH
from perfplus_agent.lab.hosts import enter_argv
from perfplus_agent.lab.lab import Lab
from perfplus_agent.lab.layout import MIG_SUFFIX

__all__ = ["LAB_AGENT_PARAMS", "OcfRun", "run_ocf"]

# How the agent reaches peers in the lab: over the migration network, by host name.
LAB_AGENT_PARAMS = {
    "hypervisor": "qemu:///system",
    "migration_transport": "tcp",
    "migration_network_suffix": MIG_SUFFIX,
}


@dataclass(frozen=True)
class OcfRun:
    """The outcome of one agent action."""

    rc: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def exit_reason(self) -> str | None:
        lines = [ln for ln in self.stderr.splitlines() if ln.startswith("ocf-exit-reason:")]
        return lines[-1].removeprefix("ocf-exit-reason:") if lines else None


def run_ocf(lab: Lab, host: str, action: str, params: dict[str, str], *,
            meta: dict[str, str] | None = None, timeout_s: float = 60.0,
            extra_env: dict[str, str] | None = None, instance: str = "vm") -> OcfRun:
    """Run ``action`` of the agent inside ``host``; the wall time includes interpreter start."""
    pid = lab.init_pid(lab.layout.host_named(host))
    env = {"PATH": CLEAN_PATH, "OCF_ROOT": "/usr/lib/ocf", "OCF_RA_VERSION_MAJOR": "1",
           "OCF_RA_VERSION_MINOR": "1", "OCF_RESOURCE_INSTANCE": instance,
           "OCF_RESOURCE_TYPE": "VirtualDomain", "OCF_RESOURCE_PROVIDER": "perfplus",
           "HA_RSCTMP": "/run/resource-agents",
           "OCF_RESKEY_CRM_meta_timeout": str(int(timeout_s * 1000)),
           "OCF_RESKEY_CRM_meta_on_node": host}
    env.update({f"OCF_RESKEY_{k}": v for k, v in params.items()})
    env.update({f"OCF_RESKEY_CRM_meta_{k}": v for k, v in (meta or {}).items()})
    env.update(extra_env or {})
    argv = enter_argv(pid, [sys.executable, "-m", "perfplus_agent.ocf.runner", action])
    t0 = time.monotonic()
    res = subprocess.run(argv, env=env, capture_output=True, text=True,
                         timeout=timeout_s + 30, check=False)
    return OcfRun(res.returncode, res.stdout, res.stderr, time.monotonic() - t0)
