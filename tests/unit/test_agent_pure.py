"""Pure pieces of the agent: URIs, libvirt state interpretation, deadlines, environment."""

import subprocess
import sys
import time

import libvirt
import pytest

from perfplus_agent.adapters.hypervisor import DomainState, interpret
from perfplus_agent.agent.deadline import Deadline
from perfplus_agent.agent.migrate_options import parse_migrate_options
from perfplus_agent.agent.uris import daemon_address, migrate_uri, network_host, remote_uri
from perfplus_agent.agent.virtual_domain import SHUTDOWN_MODES
from perfplus_agent.ocf.environment import OcfEnvironment
from perfplus_agent.ocf.exitcodes import OcfError, OcfExit
from perfplus_agent.ocf.params import SHUTDOWN_MODE_NAMES


def test_network_host_inserts_suffix_before_domain():
    assert network_host("node1", "-mig") == "node1-mig"
    assert network_host("node1.example.com", "-mig") == "node1-mig.example.com"
    assert network_host("node1", "") == "node1"


@pytest.mark.parametrize(("kw", "expected"), [
    ({}, "qemu:///system"),
    ({"transport": "tcp", "suffix": "-mig"}, "qemu+tcp://n2-mig/system"),
    ({"transport": "ssh", "user": "admin"}, "qemu+ssh://admin@n2/system"),
    ({"transport": "ssh", "user": "Bad User"}, "qemu+ssh://n2/system"),
    ({"hypervisor": "qemu+tcp:///session", "transport": "tls"}, "qemu+tls://n2/session"),
    ({"remoteuri": "qemu+tcp://%n.cluster/system"}, "qemu+tcp://n2.cluster/system"),
])
def test_remote_uri(kw, expected):
    args = {"hypervisor": None, "transport": "", "user": "", "suffix": "", "remoteuri": None}
    args.update(kw)
    if not args["transport"] and not args["remoteuri"]:
        # without a transport the URI stays local: only the host part changes
        assert remote_uri("n2", **args) == "qemu://n2/system"
    else:
        assert remote_uri("n2", **args) == expected


@pytest.mark.parametrize(("kw", "expected"), [
    ({}, None),
    ({"suffix": "-mig"}, "tcp://n2-mig"),
    ({"suffix": "-mig", "port": 49200}, "tcp://n2-mig:49200"),
    ({"migrateuri": "tcp://%n-x:4444"}, "tcp://n2-x:4444"),
    ({"options_uri": "tcp://%n-y"}, "tcp://n2-y"),
    ({"migrateuri": "tcp://%n-a", "options_uri": "tcp://%n-b"}, "tcp://n2-a"),
])
def test_migrate_uri(kw, expected):
    args = {"migrateuri": None, "options_uri": None, "suffix": "", "port": None}
    args.update(kw)
    assert migrate_uri("n2", **args) == expected


@pytest.mark.parametrize(("state", "reason", "expected"), [
    (libvirt.VIR_DOMAIN_RUNNING, 1, DomainState.RUNNING),
    (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_USER, DomainState.RUNNING),
    (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_MIGRATION, DomainState.RUNNING),
    (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_IOERROR, DomainState.FAILED),
    (libvirt.VIR_DOMAIN_SHUTDOWN, 0, DomainState.STOPPING),
    (libvirt.VIR_DOMAIN_SHUTOFF, 0, DomainState.ABSENT),
    (libvirt.VIR_DOMAIN_CRASHED, 0, DomainState.FAILED),
    (libvirt.VIR_DOMAIN_PMSUSPENDED, 0, DomainState.FAILED),
])
def test_interpret_libvirt_states(state, reason, expected):
    assert interpret(state, reason).state is expected


def test_io_error_pause_is_named():
    report = interpret(libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_IOERROR)
    assert report.detail == "paused after an I/O error"


def test_deadline_keeps_its_margin():
    d = Deadline(30, margin_s=10, start=0.0)
    assert d.work_s == 20
    assert Deadline(4, margin_s=10).work_s == 2  # never more than half for the margin
    assert Deadline(1, margin_s=10).work_s == 1.0


def test_environment_parsing():
    env = OcfEnvironment.from_environ(["VirtualDomain", "monitor"], {
        "OCF_RESOURCE_INSTANCE": "vm1", "OCF_RESKEY_config": "/x.xml",
        "OCF_RESKEY_CRM_meta_timeout": "20000", "OCF_RESKEY_CRM_meta_interval": "0",
        "OCF_RESKEY_CRM_meta_migrate_target": "n3", "OCF_RESKEY_crm_feature_set": "3.16",
    })
    assert env.action == "monitor" and env.is_probe
    assert env.timeout_s == 20.0
    assert env.reskeys == {"config": "/x.xml", "crm_feature_set": "3.16"}
    assert env.migrate_target == "n3"
    recurring = OcfEnvironment.from_environ(["x", "monitor"],
                                            {"OCF_RESKEY_CRM_meta_interval": "10000"})
    assert not recurring.is_probe
    assert OcfEnvironment.from_environ(["x", "start"], {}).timeout_s == 90.0


def test_unsupported_ocf_major_version():
    with pytest.raises(OcfError) as err:
        OcfEnvironment.from_environ(["x", "start"], {"OCF_RA_VERSION_MAJOR": "2"})
    assert err.value.code is OcfExit.ERR_UNIMPLEMENTED


def test_shutdown_modes_cover_every_accepted_name():
    assert set(SHUTDOWN_MODES) == set(SHUTDOWN_MODE_NAMES)


@pytest.mark.parametrize(("text", "flags", "params", "uri"), [
    ("", 0, {}, None),
    ("--tls --compressed", libvirt.VIR_MIGRATE_TLS | libvirt.VIR_MIGRATE_COMPRESSED, {}, None),
    ("--p2p --tunnelled --verbose", libvirt.VIR_MIGRATE_PEER2PEER | libvirt.VIR_MIGRATE_TUNNELLED,
     {}, None),
    ("--parallel --parallel-connections 4", libvirt.VIR_MIGRATE_PARALLEL,
     {libvirt.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS: 4}, None),
    ("--migrateuri=tcp://%n-mig", 0, {}, "tcp://%n-mig"),
    ("--migrateuri tcp://%n-mig --auto-converge", libvirt.VIR_MIGRATE_AUTO_CONVERGE, {},
     "tcp://%n-mig"),
])
def test_migrate_options(text, flags, params, uri):
    opts = parse_migrate_options(text)
    assert (opts.flags, opts.params, opts.migrateuri) == (flags, params, uri)


@pytest.mark.parametrize(("text", "needle"), [
    ("--frobnicate", "unsupported option '--frobnicate'"),
    ("--parallel-connections", "--parallel-connections needs a value"),
    ("--parallel-connections many", "needs a number"),
    ("--migrateuri 'tcp://x", "No closing quotation"),
])
def test_migrate_options_rejected(text, needle):
    with pytest.raises(OcfError) as err:
        parse_migrate_options(text)
    assert err.value.code is OcfExit.ERR_CONFIGURED
    assert needle in str(err.value)


def test_watchdog_ends_a_blocked_action_before_the_timeout_with_a_reason():
    """An action stuck in a call that never returns exits 1 with an exit reason shortly
    before Pacemaker's timeout, instead of being killed by Pacemaker."""
    script = (
        "import time\n"
        "from perfplus_agent.ocf.environment import OcfEnvironment\n"
        "from perfplus_agent.ocf.runner import _watchdog\n"
        "env = OcfEnvironment.from_environ(['x', 'migrate_to'], "
        "{'OCF_RESKEY_CRM_meta_timeout': '2000'})\n"
        "_watchdog(env)\n"
        "def stuck_in_a_call():\n"
        "    time.sleep(10)\n"
        "stuck_in_a_call()\n"
    )
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=30, check=False)
    elapsed = time.monotonic() - t0
    assert res.returncode == 1
    assert 1.0 < elapsed < 2.0 + 0.5
    assert "ocf-exit-reason:migrate_to gave up" in res.stderr
    assert "migrate_to was blocked in: stuck_in_a_call" in res.stderr


def test_daemon_address_is_the_node_on_the_migration_network():
    assert daemon_address("node1", "-mig", 49690) == "node1-mig:49690"
    assert daemon_address("node1.example.com", "-mig", 49690) == "node1-mig.example.com:49690"
    assert daemon_address("node1", "", 4000) == "node1:4000"
