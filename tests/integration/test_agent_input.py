"""Bad input to ocf:perfplus:VirtualDomain: the OCF 1.1 exit code, a one-line exit reason,
and a quiet probe."""

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from perfplus_agent.ocf.install import install_agents
from tests.integration.agent_support import LAB_PARAMS, domain_config, run_agent, where

pytestmark = pytest.mark.integration
OK, GENERIC, UNIMPLEMENTED, INSTALLED, CONFIGURED, NOT_RUNNING = 0, 1, 3, 5, 6, 7


def one_line_reason(res):
    assert res.exit_reason, res.stderr
    assert "\n" not in res.exit_reason.strip()
    return res.exit_reason


def test_missing_config_parameter(guests):
    res = run_agent(guests, "h1", "start", dict(LAB_PARAMS))
    assert res.rc == CONFIGURED
    assert "parameter config is required" in one_line_reason(res)
    probe = run_agent(guests, "h1", "monitor", dict(LAB_PARAMS), {"interval": "0"})
    assert probe.rc == NOT_RUNNING and probe.exit_reason is None
    assert run_agent(guests, "h1", "stop", dict(LAB_PARAMS)).rc == OK


def test_unreadable_config(guests, tmp_path):
    params = {**LAB_PARAMS, "config": str(tmp_path / "missing.xml")}
    res = run_agent(guests, "h1", "start", params)
    assert res.rc == INSTALLED
    assert "is not readable on this node" in one_line_reason(res)
    probe = run_agent(guests, "h1", "monitor", params, {"interval": "0"})
    assert probe.rc == NOT_RUNNING and probe.exit_reason is None


def test_unreadable_config_does_not_hide_a_running_domain(guests, tmp_path):
    """The upstream agent reports 'not running' here, which leads to a second copy."""
    params = domain_config(guests, "hidden", tmp_path)
    assert run_agent(guests, "h2", "start", params).rc == OK
    (tmp_path / "hidden.xml").unlink()
    probe = run_agent(guests, "h2", "monitor", params, {"interval": "0"})
    assert probe.rc == OK, probe.stderr
    assert run_agent(guests, "h2", "stop", {**params, "force_stop": "true"}).rc == OK
    assert where(guests, "hidden") == []


def test_malformed_xml(guests, tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_text("<domain type='qemu'><name>x</name>")
    res = run_agent(guests, "h1", "start", {**LAB_PARAMS, "config": str(bad)})
    assert res.rc == CONFIGURED
    assert "not well-formed XML" in one_line_reason(res)


def test_unknown_domain_is_not_running(guests, tmp_path):
    params = domain_config(guests, "ghost", tmp_path)
    res = run_agent(guests, "h3", "monitor", params, {"interval": "10000"})
    assert res.rc == NOT_RUNNING


@pytest.mark.parametrize(("extra", "needle"), [
    ({"migration_speed": "fast"}, "migration_speed"),
    ({"migration_downtime": "-5"}, "migration_downtime"),
    ({"force_stop": "true", "snapshot": "/tmp"}, "force_stop"),
    ({"stateless": "true"}, "stateless"),
    ({"force_stop": "maybe"}, "force_stop must be a boolean"),
    ({"perfplus": "true", "perfplus_port": "70000"}, "perfplus_port must be a TCP port"),
])
def test_bad_parameters(guests, tmp_path, extra, needle):
    params = {**domain_config(guests, "badp", tmp_path), **extra}
    res = run_agent(guests, "h1", "start", params)
    assert res.rc == CONFIGURED
    assert needle in one_line_reason(res)
    assert where(guests, "badp") == []
    probe = run_agent(guests, "h1", "monitor", params, {"interval": "0"})
    assert probe.rc == NOT_RUNNING and probe.exit_reason is None


def test_unknown_action(guests, tmp_path):
    res = run_agent(guests, "h1", "frobnicate", domain_config(guests, "ua", tmp_path))
    assert res.rc == UNIMPLEMENTED
    assert "unknown action 'frobnicate'" in one_line_reason(res)


@pytest.fixture
def public_dir():
    """A directory unprivileged users can read (ocf-tester runs meta-data as nobody)."""
    path = Path(tempfile.mkdtemp(prefix="perfplus-ocf-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@pytest.mark.slow
def test_ocf_tester_passes(guests, tmp_path, public_dir):
    params = domain_config(guests, "tester", tmp_path, workload=None)
    agent = install_agents(str(public_dir / "ocf"))[0]
    args = []
    for key, value in params.items():
        args += ["-o", f"{key}={value}"]
    pid = guests.lab.init_pid(guests.layout.host_named("h1"))
    res = subprocess.run(["nsenter", "-t", str(pid), "-m", "-u", "-n", "-p", "--",
                          "ocf-tester", "-n", "tester", *args, str(agent)],
                         capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "passed all tests" in res.stdout
    assert where(guests, "tester") == []
