"""Parameters of ocf:perfplus:VirtualDomain: declaration vs the installed upstream agent, and
parsing (values, errors, conflicts, defaults)."""

import dataclasses
import os
import subprocess
import typing
from pathlib import Path

import pytest
from lxml import etree

from perfplus_agent.ocf.exitcodes import OcfError, OcfExit
from perfplus_agent.ocf.params import (
    PARAMETERS,
    SHUTDOWN_MODE_NAMES,
    VirtualDomainParams,
    parse_params,
    spec_named,
)

UPSTREAM_AGENT = Path("/usr/lib/ocf/resource.d/heartbeat/VirtualDomain")
OURS = ("peers", "perfplus", "perfplus_key_file", "perfplus_port", "migration_policy",
        "migration_retries", "stop_escalation_margin")
CONFIG = {"config": "/etc/libvirt/ha/vm1.xml"}


def parse(**extra):
    return parse_params({**CONFIG, **extra})


def configured_error(reskeys) -> str:
    with pytest.raises(OcfError) as info:
        parse_params(reskeys)
    assert info.value.code == OcfExit.ERR_CONFIGURED
    reason = str(info.value)
    assert "\n" not in reason
    return reason


# -- the declaration against the installed upstream agent --------------------------------------
@pytest.fixture(scope="module")
def upstream_parameters() -> dict[str, etree._Element]:
    if not UPSTREAM_AGENT.is_file():
        pytest.skip(f"{UPSTREAM_AGENT} is not installed (Debian package resource-agents)")
    env = {**os.environ, "OCF_ROOT": "/usr/lib/ocf"}
    res = subprocess.run([str(UPSTREAM_AGENT), "meta-data"], capture_output=True, env=env,
                         timeout=30, check=True)
    root = etree.fromstring(res.stdout)
    return {p.get("name"): p for p in root.iterfind("parameters/parameter")}


def test_upstream_has_27_parameters(upstream_parameters):
    assert len(upstream_parameters) == 27


def test_every_upstream_parameter_is_declared(upstream_parameters):
    ours = {p.name for p in PARAMETERS}
    assert sorted(set(upstream_parameters) - ours) == []


def test_upstream_defaults_and_types_are_kept(upstream_parameters):
    for name, elem in upstream_parameters.items():
        spec = spec_named(name)
        content = elem.find("content")
        assert spec.default == content.get("default"), name
        assert spec.content == content.get("type"), name
        assert spec.upstream, name


def test_upstream_required_and_unique_are_kept(upstream_parameters):
    for name, elem in upstream_parameters.items():
        spec = spec_named(name)
        assert spec.required == (elem.get("required") == "1"), name
        assert spec.unique == (elem.get("unique") == "1"), name


def test_only_our_own_parameters_are_not_upstream(upstream_parameters):
    extra = [p.name for p in PARAMETERS if p.name not in upstream_parameters]
    assert extra == list(OURS)
    assert all(not spec_named(n).upstream for n in OURS)


# -- the declaration on its own ----------------------------------------------------------------
def test_declaration_is_consistent():
    names = [p.name for p in PARAMETERS]
    assert len(names) == len(set(names)) == 34
    assert [p.name for p in PARAMETERS if p.required] == ["config"]
    assert [p.name for p in PARAMETERS if p.unique] == ["config"]
    for p in PARAMETERS:
        assert p.content in ("string", "integer", "boolean"), p.name
        assert p.shortdesc.strip() and len(p.longdesc) > len(p.shortdesc), p.name
        assert "\n" not in p.difference, p.name


def test_params_has_one_field_per_parameter_of_the_right_type():
    hints = typing.get_type_hints(VirtualDomainParams)
    assert list(hints) == [p.name for p in PARAMETERS]
    wanted = {"boolean": {bool}, "integer": {int, int | None}}
    for p in PARAMETERS:
        if p.content in wanted:
            assert hints[p.name] in wanted[p.content], p.name


def test_runtime_defaults_are_documented():
    for name in ("hypervisor", "migrateport"):
        assert "Run-time default when unset" in spec_named(name).longdesc


def test_defaults_of_the_declaration_match_the_dataclass():
    parsed = parse()
    assert parsed == VirtualDomainParams(config=CONFIG["config"])
    for p in PARAMETERS:
        if p.content == "boolean" and p.default is not None:
            assert getattr(parsed, p.name) is (p.default in ("1", "true")), p.name
        if p.content == "integer" and p.default is not None:
            assert getattr(parsed, p.name) == int(p.default), p.name


# -- defaults and good values ------------------------------------------------------------------
def test_defaults():
    p = parse()
    assert p.config == "/etc/libvirt/ha/vm1.xml"
    assert p.hypervisor is None and p.migrateuri is None and p.remoteuri is None
    assert p.migrate_options is None and p.migrateport is None
    assert p.snapshot is None and p.backingfile is None and p.copyindirs is None
    assert p.shutdown_mode is None and p.migration_user is None
    assert p.force_stop is False and p.stateless is False and p.start_resources is False
    assert p.save_config_on_stop is False and p.sync_config_on_stop is False
    assert p.autoset_utilization_cpu and p.autoset_utilization_host_memory
    assert p.autoset_utilization_hv_memory
    assert not (p.unset_utilization_cpu or p.unset_utilization_host_memory
                or p.unset_utilization_hv_memory)
    assert p.migration_speed == 0 and p.migration_downtime == 0
    assert p.monitor_scripts == ""
    assert p.peers == () and p.perfplus is False
    assert p.migration_policy == "default" and p.stop_escalation_margin == 10


def test_blank_values_mean_unset():
    blanks = {p.name: "  " for p in PARAMETERS if p.name != "config"}
    assert parse_params({**CONFIG, **blanks}) == parse()


def test_unknown_names_are_ignored():
    assert parse(crm_feature_set="3.16", bogus="x", CRM_meta_timeout="20000") == parse()


@pytest.mark.parametrize("word", ["yes", "YES", "y", "true", "True", "1", "on", "ON", "ja",
                                  " true "])
def test_true_spellings(word):
    assert parse(force_stop=word).force_stop is True


@pytest.mark.parametrize("word", ["no", "No", "n", "false", "FALSE", "0", "off", "nein"])
def test_false_spellings(word):
    assert parse(autoset_utilization_cpu=word).autoset_utilization_cpu is False


def test_good_values():
    p = parse(hypervisor="qemu:///system", migration_transport="ssh", migration_user="ha",
              migration_downtime="250", migration_speed="100", migration_network_suffix="-mig",
              migrateuri="tcp://%n-mig", migrate_options="--migrateuri=tcp://%n:49200",
              monitor_scripts="/usr/local/bin/a /usr/local/bin/b", migrateport="49200",
              remoteuri="qemu+tls://%n/system", snapshot="/var/lib/ha/snap",
              shutdown_mode="agent", start_resources="true", migration_policy="postcopy",
              stop_escalation_margin="0", perfplus="true")
    assert p.hypervisor == "qemu:///system" and p.migration_transport == "ssh"
    assert p.migration_user == "ha" and p.migration_network_suffix == "-mig"
    assert p.migration_downtime == 250 and p.migration_speed == 100
    assert p.migrateuri == "tcp://%n-mig" and p.remoteuri == "qemu+tls://%n/system"
    assert p.migrate_options == "--migrateuri=tcp://%n:49200"
    assert p.monitor_scripts == "/usr/local/bin/a /usr/local/bin/b"
    assert p.migrateport == 49200 and p.snapshot == "/var/lib/ha/snap"
    assert p.shutdown_mode == "agent" and p.start_resources is True
    assert p.migration_policy == "postcopy" and p.stop_escalation_margin == 0
    assert p.perfplus is True  # validate-all, not parsing, refuses it


def test_stateless_mode_parses():
    p = parse(backingfile="/var/lib/base.qcow2", stateless="yes", copyindirs="/etc/a /etc/b")
    assert (p.backingfile, p.stateless, p.copyindirs) == ("/var/lib/base.qcow2", True,
                                                          "/etc/a /etc/b")


def test_values_are_trimmed():
    assert parse(hypervisor=" qemu:///system\n").hypervisor == "qemu:///system"
    assert parse(migration_speed=" 42 ").migration_speed == 42


@pytest.mark.parametrize(("given", "normalised"), [
    ("acpi", "acpi"),
    ("agent,acpi", "agent,acpi"),
    (" agent , acpi ", "agent,acpi"),
    (",".join(SHUTDOWN_MODE_NAMES), ",".join(SHUTDOWN_MODE_NAMES)),
])
def test_shutdown_modes(given, normalised):
    assert parse(shutdown_mode=given).shutdown_mode == normalised


def test_peers_split_and_deduplicated():
    assert parse(peers=" n1  n2\tn3,n4 n1 ").peers == ("n1", "n2", "n3", "n4")


def test_sync_config_implies_save_config():
    p = parse(sync_config_on_stop="true")
    assert p.sync_config_on_stop and p.save_config_on_stop
    p = parse(sync_config_on_stop="true", save_config_on_stop="false")
    assert p.save_config_on_stop
    p = parse(save_config_on_stop="true")
    assert p.save_config_on_stop and not p.sync_config_on_stop


def test_result_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        parse().force_stop = True  # type: ignore[misc]


# -- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("reskeys", [{}, {"config": ""}, {"config": "   "},
                                     {"hypervisor": "qemu:///system"}])
def test_config_is_required(reskeys):
    assert configured_error(reskeys) == ("parameter config is required: the path of the "
                                         "domain's libvirt XML")


BOOLEANS = [p.name for p in PARAMETERS if p.content == "boolean"]
INTEGERS = [p.name for p in PARAMETERS if p.content == "integer"]


@pytest.mark.parametrize("name", BOOLEANS)
@pytest.mark.parametrize("value", ["maybe", "2", "t", "yess"])
def test_bad_booleans(name, value):
    assert configured_error({**CONFIG, name: value}) == (
        f"{name} must be a boolean (true/false), not '{value}'")


@pytest.mark.parametrize("name", INTEGERS)
@pytest.mark.parametrize("value", ["fast", "-5", "+5", "1.5", "0x10", "1e3", "1_000", "١٢"])
def test_bad_integers(name, value):
    assert configured_error({**CONFIG, name: value}) == (
        f"{name} must be a non-negative decimal integer, not '{value}'")


@pytest.mark.parametrize("value", ["0", "65536"])
def test_migrateport_out_of_range(value):
    assert configured_error({**CONFIG, "migrateport": value}) == (
        f"migrateport must be a TCP port (1-65535), not '{value}'")


def test_migrateport_bounds():
    assert parse(migrateport="1").migrateport == 1
    assert parse(migrateport="65535").migrateport == 65535


@pytest.mark.parametrize("value", ["reboot", "ACPI", "acpi,", "acpi,,agent", "acpi agent"])
def test_bad_shutdown_mode(value):
    assert configured_error({**CONFIG, "shutdown_mode": value}) == (
        "shutdown_mode must be one of acpi, agent, initctl, signal, paravirt or a "
        f"comma-separated list of them, not '{value}'")


def test_unknown_migration_policy():
    assert configured_error({**CONFIG, "migration_policy": "fastest"}) == (
        "migration_policy must be one of default, minimal-downtime, postcopy, strict, "
        "not 'fastest'")


def test_error_quotes_values_on_one_line():
    reason = configured_error({**CONFIG, "force_stop": "a\nb"})
    assert reason == "force_stop must be a boolean (true/false), not 'a\\nb'"


# -- conflicts ---------------------------------------------------------------------------------
def test_force_stop_with_snapshot():
    assert configured_error({**CONFIG, "force_stop": "1", "snapshot": "/srv/snap"}) == (
        "force_stop and snapshot cannot be combined: a forced stop leaves no memory state "
        "to save")


def test_force_stop_false_with_snapshot_is_fine():
    assert parse(force_stop="0", snapshot="/srv/snap").snapshot == "/srv/snap"


def test_stateless_without_backingfile():
    assert configured_error({**CONFIG, "stateless": "true"}) == (
        "stateless=true needs backingfile: there is no base image to recreate the disk from")


def test_copyindirs_without_stateless():
    reskeys = {**CONFIG, "copyindirs": "/etc/x", "backingfile": "/b.qcow2"}
    assert configured_error(reskeys) == "copyindirs is only used with stateless=true"
