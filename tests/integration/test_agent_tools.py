"""Pacemaker's own tools find and describe ocf:perfplus:VirtualDomain.

Pacemaker's OCF directory is fixed at build time, so the agent is overlaid onto it inside a
private mount namespace: the machine's /usr stays untouched."""

import subprocess

import pytest

from perfplus_agent.ocf.install import install_agents

pytestmark = pytest.mark.integration
OCF_DIR = "/usr/lib/ocf/resource.d"


def in_overlay(tmp_path, command: str) -> subprocess.CompletedProcess[str]:
    install_agents(str(tmp_path / "ocf"))
    script = (f"mount -t overlay overlay -o lowerdir={tmp_path}/ocf/resource.d:{OCF_DIR} "
              f"{OCF_DIR} && {command}")
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, timeout=120, check=False)


def test_crm_ra_info_shows_the_metadata(tmp_path):
    res = in_overlay(tmp_path, "crm ra info ocf:perfplus:VirtualDomain")
    assert res.returncode == 0, res.stderr
    for name in ("config", "migration_network_suffix", "shutdown_mode", "peers"):
        assert name in res.stdout
    assert "migrate_to" in res.stdout


def test_pcs_resource_describe_shows_the_metadata(tmp_path):
    res = in_overlay(tmp_path, "pcs resource describe ocf:perfplus:VirtualDomain")
    assert res.returncode == 0, res.stderr
    assert "config (required" in res.stdout
    assert "migration_policy" in res.stdout


def test_crm_resource_lists_the_provider(tmp_path):
    res = in_overlay(tmp_path, "crm_resource --list-ocf-providers")
    assert res.returncode == 0, res.stderr
    assert "perfplus" in res.stdout.split()
