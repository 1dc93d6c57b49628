"""Instance parameters of ``ocf:perfplus:VirtualDomain``: their declaration and their parsing.

``PARAMETERS`` declares every parameter once (the 27 of ``ocf:heartbeat:VirtualDomain`` with
the same names and defaults, then ours); the meta-data and the parameter documentation are
generated from it. ``parse_params`` turns the ``OCF_RESKEY_*`` values into a typed, checked
``VirtualDomainParams``. Parsing is pure: no file system, no libvirt.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from perfplus_agent.daemon.defaults import DEFAULT_KEY_FILE
from perfplus_agent.daemon.defaults import DEFAULT_PORT as DAEMON_DEFAULT_PORT
from perfplus_agent.migration.convergence import POLICIES
from perfplus_agent.ocf.exitcodes import OcfError, OcfExit

__all__ = [
    "PARAMETERS",
    "SHUTDOWN_MODE_NAMES",
    "ParamSpec",
    "VirtualDomainParams",
    "parse_params",
    "spec_named",
]

ContentType = Literal["string", "integer", "boolean"]

SHUTDOWN_MODE_NAMES = ("acpi", "agent", "initctl", "signal", "paravirt")
# Pacemaker's spellings, plus the "ja" that ocf-shellfuncs' ocf_is_true also takes as true.
_TRUE = frozenset({"yes", "y", "true", "on", "1", "ja"})
_FALSE = frozenset({"no", "n", "false", "off", "0", "nein"})
_DECIMAL = re.compile(r"[0-9]+")
_MAX_PORT = 65535


@dataclass(frozen=True)
class ParamSpec:
    """One instance parameter as the meta-data and the documentation describe it."""

    name: str
    content: ContentType
    default: str | None
    shortdesc: str
    longdesc: str
    required: bool = False
    unique: bool = False
    upstream: bool = True
    difference: str = ""


DEFAULT_KEY_FILE_TEXT = str(DEFAULT_KEY_FILE)


def _policy_list() -> str:
    return ", ".join(f"{p.name} ({p.description})" for p in POLICIES.values())


PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec(
        "config", "string", "",
        "Path of the domain's libvirt XML",
        "Absolute path of the libvirt domain XML that defines this virtual machine; the domain "
        "name is taken from its <name> element. The file must be readable on every node that "
        "may run the resource (shared storage or a synchronised copy). The domain is started "
        "from it as a transient domain. On a node where the file cannot be read, probes and "
        "stops still find the domain by the name remembered from its last start or monitor "
        "on that node.",
        required=True, unique=True,
        difference="When the file is unreadable on a node, probe and stop look for the domain "
        "by the name remembered on that node instead of reporting it stopped unchecked.",
    ),
    ParamSpec(
        "hypervisor", "string", None,
        "libvirt URI of the local hypervisor",
        "libvirt connection URI used for every call on this node, for example qemu:///system. "
        "It is also the model for the URI of a peer node: its scheme and path are kept and the "
        "host becomes the peer's name (see migration_transport, migration_user and "
        "migration_network_suffix). Run-time default when unset: qemu:///system.",
        difference="When unset, qemu:///system is used rather than the default URI that "
        "'virsh uri' reports.",
    ),
    ParamSpec(
        "force_stop", "boolean", "0",
        "Destroy the domain on stop, with no graceful shutdown",
        "When true, stop powers the domain off at once (libvirt destroy) instead of first "
        "asking the guest to shut down. The guest gets no chance to flush its caches, so use "
        "it only for guests that cannot shut down cleanly. Cannot be combined with snapshot.",
    ),
    ParamSpec(
        "migration_transport", "string", "",
        "Transport for reaching a peer's libvirt",
        "Transport added to the scheme of the generated peer URI: ssh gives "
        "qemu+ssh://node/system, tls gives qemu+tls://node/system. It only concerns the "
        "libvirt control connection, not the migration data stream. Empty: libvirt's default "
        "transport. Not used when remoteuri is set.",
    ),
    ParamSpec(
        "migration_user", "string", None,
        "User name in the generated peer URI",
        "User name put in front of the host in the generated peer URI (user@node), typically "
        "with the ssh transport. It is used only if it is made of lower-case letters, digits "
        "and dashes and starts with a letter. Unset: no user in the URI. Not used when "
        "remoteuri is set.",
        difference="The user never ends up in %n: migrateuri and --migrateuri always get the "
        "plain node name.",
    ),
    ParamSpec(
        "migration_downtime", "integer", "0",
        "First maximum downtime of a live migration (ms)",
        "Longest pause of the guest, in milliseconds, allowed for the final switch-over of a "
        "live migration. When set, it replaces the lower steps of the migration policy's "
        "downtime ladder and is in force from the start of the migration; the policy may "
        "still raise the limit when the migration stalls. 0: start from the policy's first "
        "step.",
        difference="Applied from the start as the first step of the policy's ladder, instead "
        "of being set once two seconds after the migration began.",
    ),
    ParamSpec(
        "migration_speed", "integer", "0",
        "Bandwidth limit of a live migration (MiB/s)",
        "Upper limit of the migration data stream of this resource, in MiB/s, for when the "
        "migration network carries other traffic. 0: the agent sets no limit.",
    ),
    ParamSpec(
        "migration_network_suffix", "string", "",
        "Host name suffix of the migration network",
        "Sends migrations over a dedicated network by deriving each node's name on it: the "
        "suffix is appended to the node name, or inserted before the first dot of a fully "
        "qualified name (node1.example.com with -mig gives node1-mig.example.com). The "
        "derived name is used for the peer URI and for the data stream "
        "(tcp://name[:migrateport]); it must resolve on every node to an address on that "
        "network. Empty: the node names are used as they are.",
        difference="The data stream URI is tcp://host[:port] whatever the hypervisor, and "
        "without migrateport libvirt chooses the port.",
    ),
    ParamSpec(
        "migrateuri", "string", None,
        "Explicit URI of the migration data stream",
        "Destination of the migration data stream, replacing the generated one; %n stands "
        "for the target node's name (for example tcp://%n-mig:49152). When set, "
        "migration_network_suffix, migrateport and a --migrateuri in migrate_options are not "
        "used for the data stream.",
        difference="%n is always the plain node name, even when migration_user is set.",
    ),
    ParamSpec(
        "migrate_options", "string", None,
        "Extra virsh migrate options",
        "Options as 'virsh migrate' takes them (for example --tls, --compressed, "
        "--auto-converge, --postcopy, --parallel --parallel-connections 4, --migrateuri=URI "
        "with %n for the target node). They become the libvirt flags and parameters virsh "
        "would use; options that only change virsh's own output or waiting are ignored, and "
        "any other option is a configuration error. How a migration is pushed to converge is "
        "chosen with migration_policy.",
        difference="Translated into libvirt flags instead of being passed to virsh; an "
        "option that cannot be honoured is rejected by validation instead of ignored.",
    ),
    ParamSpec(
        "monitor_scripts", "string", "",
        "Programs that check services inside the guest",
        "Space-separated list of executables run by monitor, start and migrate_from once the "
        "domain is running. Each must exit 0 when the guest's services are healthy; any other "
        "exit fails the operation, with the program's last output line as the reason. Each "
        "gets at most 30 seconds (less if the operation has less time left): count their run "
        "time in the operation timeouts.",
        difference="Each program runs once per operation under a time limit, instead of "
        "start and migrate_from retrying until the operation times out.",
    ),
    ParamSpec(
        "autoset_utilization_cpu", "boolean", "true",
        "Publish the vCPU count as the 'cpu' utilization",
        "When true, monitor stores the domain's number of virtual CPUs in the resource's "
        "'cpu' utilization attribute, for Pacemaker's placement-strategy.",
        difference="The CIB is written only when the value changes, and never by a probe.",
    ),
    ParamSpec(
        "autoset_utilization_host_memory", "boolean", "true",
        "Publish the memory size as the 'host_memory' utilization",
        "When true, monitor stores the domain's maximum memory, in MiB, in the resource's "
        "'host_memory' utilization attribute (the name NodeUtilization uses for a node's "
        "memory).",
        difference="The CIB is written only when the value changes, and never by a probe.",
    ),
    ParamSpec(
        "autoset_utilization_hv_memory", "boolean", "true",
        "Publish the memory size as the 'hv_memory' utilization",
        "When true, monitor stores the domain's maximum memory, in MiB, in the resource's "
        "'hv_memory' utilization attribute.",
        difference="The CIB is written only when the value changes, and never by a probe.",
    ),
    ParamSpec(
        "unset_utilization_cpu", "boolean", "false",
        "Remove the 'cpu' utilization",
        "When true and autoset_utilization_cpu is false, monitor removes the resource's 'cpu' "
        "utilization attribute, so that a value set earlier stops counting for placement.",
        difference="The attribute is removed once, not again on every monitor.",
    ),
    ParamSpec(
        "unset_utilization_host_memory", "boolean", "false",
        "Remove the 'host_memory' utilization",
        "When true and autoset_utilization_host_memory is false, monitor removes the "
        "resource's 'host_memory' utilization attribute.",
        difference="The attribute is removed once, not again on every monitor.",
    ),
    ParamSpec(
        "unset_utilization_hv_memory", "boolean", "false",
        "Remove the 'hv_memory' utilization",
        "When true and autoset_utilization_hv_memory is false, monitor removes the "
        "resource's 'hv_memory' utilization attribute.",
        difference="The attribute is removed once, not again on every monitor.",
    ),
    ParamSpec(
        "migrateport", "integer", None,
        "Port of the migration data stream",
        "TCP port put in the data stream URI generated from migration_network_suffix. "
        "Run-time default when unset: no port in the URI, so libvirt picks a free one from "
        "its migration range (49152-49215 unless configured otherwise); firewalls between the "
        "nodes must then allow that range. Not used when migrateuri or a --migrateuri option "
        "is set.",
        difference="When unset, libvirt chooses the port instead of the agent drawing one at "
        "random from 49152-49215.",
    ),
    ParamSpec(
        "remoteuri", "string", None,
        "Explicit libvirt URI of a peer node",
        "libvirt URI used to reach another node's hypervisor, replacing the generated one; %n "
        "stands for that node's name (for example qemu+tls://%n.example.com/system). It is "
        "used for migrations and, before every start, to ask each other node whether it "
        "already runs the domain. When set, migration_transport, migration_user and "
        "migration_network_suffix do not change the peer URI.",
        difference="Also used before every start, to ask each other node whether it already "
        "runs the domain.",
    ),
    ParamSpec(
        "save_config_on_stop", "boolean", None,
        "Write the running definition back to config",
        "When true, the domain's current definition (inactive form, with security "
        "information) replaces the file named by config whenever it differs: on stop, before "
        "migrate_to and on every monitor. Changes made to the running domain, for instance "
        "with virsh, thus survive a restart. Unset means false.",
        difference="The new file is written atomically after a well-formedness check (not "
        "virt-xml-validate), also when force_stop is set, and not again on migrate_from.",
    ),
    ParamSpec(
        "sync_config_on_stop", "boolean", None,
        "Also push the saved config to the other nodes with csync2",
        "When true, save_config_on_stop is switched on too, and each time the file is "
        "rewritten 'csync2 -x' pushes it to the other nodes. csync2 must be installed and "
        "configured for that file; validate fails when it is missing. Unset means false.",
    ),
    ParamSpec(
        "snapshot", "string", "",
        "Directory for the guest's memory state on stop",
        "When set, stop saves the running domain's memory state to <dir>/<domain>.state "
        "instead of shutting the guest down (it shuts it down if saving fails), and the next "
        "start on a node that sees the file restores the domain from it and deletes it. The "
        "directory must exist; put it on shared storage to resume on any node. Cannot be "
        "combined with force_stop.",
        difference="validate fails (exit 5) when the directory does not exist.",
    ),
    ParamSpec(
        "backingfile", "string", "",
        "Base image for a copy-on-write disk (not supported yet)",
        "Path of a read-only base disk image; with the upstream agent, start creates a qcow2 "
        "overlay on top of it next to the config file. Not supported by this agent yet: "
        "validate rejects any value.",
        difference="Not supported yet: validate rejects it (exit 6).",
    ),
    ParamSpec(
        "stateless", "boolean", "false",
        "Recreate the copy-on-write disk on every start (not supported yet)",
        "When true, the overlay made from backingfile is recreated at every start, so the "
        "guest always boots from the unchanged base image. Requires backingfile, which this "
        "agent does not support yet.",
        difference="Unusable for now, since it requires backingfile.",
    ),
    ParamSpec(
        "copyindirs", "string", "",
        "Directories copied into a stateless guest (not supported yet)",
        "Space-separated directories copied into the guest's file system (virt-copy-in) "
        "before a stateless start. Setting it without stateless=true is a configuration "
        "error. Not supported by this agent yet: validate rejects any value.",
        difference="An error without stateless (upstream ignores it), and not supported yet: "
        "validate rejects it.",
    ),
    ParamSpec(
        "shutdown_mode", "string", "",
        "How the guest is asked to shut down",
        "libvirt shutdown method for the graceful part of stop: acpi, agent, initctl, signal "
        "or paravirt, or a comma-separated list of them to let libvirt try each (for example "
        "agent,acpi). 'agent' needs the QEMU guest agent running in the guest. Empty: "
        "libvirt's default for the hypervisor.",
        difference="Applied (the upstream agent ignores it because of a typo in a variable "
        "name), and an unknown mode is a configuration error.",
    ),
    ParamSpec(
        "start_resources", "boolean", "false",
        "Start the storage pools and networks the domain uses",
        "When true, the libvirt storage pools (started, or refreshed if active) and virtual "
        "networks (started if inactive) that the domain XML refers to are brought up on this "
        "node before a start, and on the target node before a migration.",
    ),
    # -- parameters that only ocf:perfplus:VirtualDomain has ---------------------------------
    ParamSpec(
        "peers", "string", "",
        "Nodes to ask when the cluster membership is unknown",
        "Space-separated node names asked, before a start, whether they already run the "
        "domain. Normally the nodes come from Pacemaker/corosync and this list is not used; "
        "it matters only when the membership cannot be read, for instance when the agent is "
        "run by hand.",
        upstream=False,
        difference="The upstream agent never asks other nodes before starting.",
    ),
    ParamSpec(
        "perfplus", "boolean", "false",
        "Migrate through the Perf+ migration daemons",
        "When true, live migrations (migrate_to, and a start that finds the domain running on "
        "another node) are carried out by the Perf+ migration daemon of the node that runs the "
        "domain: QEMU's stream goes through its filter, which does not resend memory pages "
        "whose content is unchanged since they were last sent, and travels encrypted to the "
        "destination node's daemon. Every node needs `perfplus daemon` running and the same "
        "cluster key. When false, libvirt migrates directly.",
        upstream=False,
        difference="The upstream agent has no equivalent.",
    ),
    ParamSpec(
        "perfplus_key_file", "string", DEFAULT_KEY_FILE_TEXT,
        "Cluster key of the Perf+ daemons",
        "File holding the cluster key (made by `perfplus daemon keygen`, mode 0600) with which "
        "the agent authenticates to the daemons. Used when perfplus is true.",
        upstream=False,
        difference="The upstream agent has no equivalent.",
    ),
    ParamSpec(
        "perfplus_port", "integer", str(DAEMON_DEFAULT_PORT),
        "TCP port of the Perf+ daemons",
        "Port on which every node's Perf+ daemon listens, on the node's migration network "
        "address (the node name plus migration_network_suffix). Used when perfplus is true.",
        upstream=False,
        difference="The upstream agent has no equivalent.",
    ),
    ParamSpec(
        "migration_policy", "string", "default",
        "Convergence policy of live migrations",
        "Name of the policy that steers a live migration to completion: a ladder of downtime "
        "limits climbed each time the migration stalls, whether QEMU's auto-converge "
        "throttling is on, and what happens past the last step. An aborted migration leaves "
        "the guest running on its source, and every migration is aborted before the "
        f"operation's timeout. Policies: {_policy_list()}.",
        upstream=False,
        difference="The upstream agent only sets migration_downtime once and lets the "
        "operation time out.",
    ),
    ParamSpec(
        "migration_retries", "integer", "1",
        "Tries again of a failed live migration",
        "How many times a live migration that failed is tried again within the same action "
        "(migrate_to, or a start that migrates), instead of leaving Pacemaker to stop the "
        "guest and start it cold. A try is made again only when the guest still runs on the "
        "source, the destination's libvirt answers and has no active copy of it, the "
        "migration failed rather than being aborted (its deadline, the convergence policy), "
        "and at least 5 seconds of the operation's time are left. 0 never tries again.",
        upstream=False,
        difference="The upstream agent never tries again.",
    ),
    ParamSpec(
        "stop_escalation_margin", "integer", "10",
        "Seconds of the stop timeout kept for destroy",
        "The guest is asked to shut down gracefully until only this many seconds of the stop "
        "operation's timeout are left; it is then destroyed, with that time to finish. "
        "Destroying a large or stuck guest can take more than 5 seconds: raise it if stops "
        "time out. At most half of the stop timeout is kept.",
        upstream=False,
        difference="The upstream agent keeps a fixed 5 seconds.",
    ),
)

_SPECS: dict[str, ParamSpec] = {p.name: p for p in PARAMETERS}


def spec_named(name: str) -> ParamSpec:
    """The declaration of parameter ``name`` (KeyError if there is none)."""
    return _SPECS[name]


@dataclass(frozen=True)
class VirtualDomainParams:
    """Checked, typed instance parameters; ``None`` means "not set" where that matters."""

    config: str
    hypervisor: str | None = None
    force_stop: bool = False
    migration_transport: str | None = None
    migration_user: str | None = None
    migration_downtime: int = 0  # milliseconds; 0 = not set
    migration_speed: int = 0  # MiB/s; 0 = not set
    migration_network_suffix: str | None = None
    migrateuri: str | None = None
    migrate_options: str | None = None
    monitor_scripts: str = ""
    autoset_utilization_cpu: bool = True
    autoset_utilization_host_memory: bool = True
    autoset_utilization_hv_memory: bool = True
    unset_utilization_cpu: bool = False
    unset_utilization_host_memory: bool = False
    unset_utilization_hv_memory: bool = False
    migrateport: int | None = None
    remoteuri: str | None = None
    save_config_on_stop: bool = False
    sync_config_on_stop: bool = False
    snapshot: str | None = None
    backingfile: str | None = None
    stateless: bool = False
    copyindirs: str | None = None
    shutdown_mode: str | None = None  # comma-separated mode names, without blanks
    start_resources: bool = False
    peers: tuple[str, ...] = ()
    perfplus: bool = False
    perfplus_key_file: str = DEFAULT_KEY_FILE_TEXT
    perfplus_port: int = DAEMON_DEFAULT_PORT
    migration_policy: str = "default"
    migration_retries: int = 1
    stop_escalation_margin: int = 10  # seconds


def _configured(reason: str) -> OcfError:
    return OcfError(OcfExit.ERR_CONFIGURED, reason)


class _Reader:
    """Reads one parameter at a time: the given value (trimmed) or, when blank, the default."""

    def __init__(self, reskeys: Mapping[str, str]) -> None:
        self._reskeys = reskeys

    def raw(self, name: str) -> str | None:
        value = (self._reskeys.get(name) or "").strip()
        return value or _SPECS[name].default

    def text(self, name: str) -> str:
        return self.raw(name) or ""

    def optional(self, name: str) -> str | None:
        return self.raw(name) or None

    def boolean(self, name: str) -> bool:
        value = self.raw(name)
        if value is None:
            return False
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise _configured(f"{name} must be a boolean (true/false), not {value!r}")

    def integer(self, name: str) -> int | None:
        value = self.raw(name)
        if value is None:
            return None
        if not _DECIMAL.fullmatch(value):
            raise _configured(f"{name} must be a non-negative decimal integer, not {value!r}")
        return int(value)

    def count(self, name: str) -> int:
        """An integer parameter that has a default (so is never unset)."""
        return self.integer(name) or 0


def _config(reader: _Reader) -> str:
    value = reader.text("config")
    if not value:
        raise _configured("parameter config is required: the path of the domain's libvirt XML")
    return value


def _port(reader: _Reader) -> int | None:
    port = reader.integer("migrateport")
    if port is not None and not 1 <= port <= _MAX_PORT:
        raise _configured(f"migrateport must be a TCP port (1-{_MAX_PORT}), "
                          f"not {reader.raw('migrateport')!r}")
    return port


def _daemon_port(reader: _Reader) -> int:
    port = reader.count("perfplus_port")
    if not 1 <= port <= _MAX_PORT:
        raise _configured(f"perfplus_port must be a TCP port (1-{_MAX_PORT}), "
                          f"not {reader.raw('perfplus_port')!r}")
    return port


def _shutdown_mode(reader: _Reader) -> str | None:
    value = reader.optional("shutdown_mode")
    if value is None:
        return None
    modes = [m.strip() for m in value.split(",")]
    if not all(m in SHUTDOWN_MODE_NAMES for m in modes):
        known = ", ".join(SHUTDOWN_MODE_NAMES)
        raise _configured(f"shutdown_mode must be one of {known} or a comma-separated list of "
                          f"them, not {value!r}")
    return ",".join(modes)


def _peers(reader: _Reader) -> tuple[str, ...]:
    names = re.split(r"[\s,]+", reader.text("peers"))
    return tuple(dict.fromkeys(n for n in names if n))


def _policy(reader: _Reader) -> str:
    name = reader.text("migration_policy")
    if name not in POLICIES:
        known = ", ".join(POLICIES)
        raise _configured(f"migration_policy must be one of {known}, not {name!r}")
    return name


def _check_conflicts(p: VirtualDomainParams) -> None:
    if p.force_stop and p.snapshot:
        raise _configured("force_stop and snapshot cannot be combined: a forced stop leaves "
                          "no memory state to save")
    if p.stateless and not p.backingfile:
        raise _configured("stateless=true needs backingfile: there is no base image to "
                          "recreate the disk from")
    if p.copyindirs and not p.stateless:
        raise _configured("copyindirs is only used with stateless=true")


def parse_params(reskeys: Mapping[str, str]) -> VirtualDomainParams:
    """Check and type the instance parameters (names without the ``OCF_RESKEY_`` prefix).

    Blank values count as unset; unknown names are ignored. Raises ``OcfError`` with
    ``ERR_CONFIGURED`` and a one-line reason for a missing config, a malformed value or
    conflicting parameters.
    """
    r = _Reader(reskeys)
    config = _config(r)
    sync = r.boolean("sync_config_on_stop")
    params = VirtualDomainParams(
        config=config,
        hypervisor=r.optional("hypervisor"),
        force_stop=r.boolean("force_stop"),
        migration_transport=r.optional("migration_transport"),
        migration_user=r.optional("migration_user"),
        migration_downtime=r.count("migration_downtime"),
        migration_speed=r.count("migration_speed"),
        migration_network_suffix=r.optional("migration_network_suffix"),
        migrateuri=r.optional("migrateuri"),
        migrate_options=r.optional("migrate_options"),
        monitor_scripts=r.text("monitor_scripts"),
        autoset_utilization_cpu=r.boolean("autoset_utilization_cpu"),
        autoset_utilization_host_memory=r.boolean("autoset_utilization_host_memory"),
        autoset_utilization_hv_memory=r.boolean("autoset_utilization_hv_memory"),
        unset_utilization_cpu=r.boolean("unset_utilization_cpu"),
        unset_utilization_host_memory=r.boolean("unset_utilization_host_memory"),
        unset_utilization_hv_memory=r.boolean("unset_utilization_hv_memory"),
        migrateport=_port(r),
        remoteuri=r.optional("remoteuri"),
        save_config_on_stop=r.boolean("save_config_on_stop") or sync,
        sync_config_on_stop=sync,
        snapshot=r.optional("snapshot"),
        backingfile=r.optional("backingfile"),
        stateless=r.boolean("stateless"),
        copyindirs=r.optional("copyindirs"),
        shutdown_mode=_shutdown_mode(r),
        start_resources=r.boolean("start_resources"),
        peers=_peers(r),
        perfplus=r.boolean("perfplus"),
        perfplus_key_file=r.text("perfplus_key_file"),
        perfplus_port=_daemon_port(r),
        migration_policy=_policy(r),
        migration_retries=r.count("migration_retries"),
        stop_escalation_margin=r.count("stop_escalation_margin"),
    )
    _check_conflicts(params)
    return params
