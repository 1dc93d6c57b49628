"""Names, addresses and paths of one lab, derived from its name and host count.

Every network of a lab lives inside namespaces the lab creates, so two labs may use the same
addresses; what must differ is the namespace names and the state directory, which carry the
lab's name as a prefix.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from perfplus_agent.errors import UsageError

__all__ = ["CLUSTER_DIRS", "DEFAULT_NAME", "MAX_HOSTS", "MIG_SUFFIX", "PRIVATE_DIRS", "HostLayout",
           "LabLayout", "state_root"]

DEFAULT_NAME = "perfplus"
MAX_HOSTS = 8
LAN_NET = "10.77.0"
MIG_NET = "10.77.1"
MIG_SUFFIX = "-mig"  # a host name plus this resolves to its migration-network address
CLIENT_ADDR = f"{LAN_NET}.250"
GUEST_FIRST = 100
_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,11}$")


def state_root() -> Path:
    """Where labs keep their state (``PERFPLUS_LAB_STATE`` overrides it)."""
    return Path(os.environ.get("PERFPLUS_LAB_STATE", "/var/lib/perfplus/lab"))


@dataclass(frozen=True)
class HostLayout:
    """One simulated host: its name, namespace, addresses and private directories."""

    lab: str
    index: int
    state_dir: Path

    @property
    def name(self) -> str:
        """Host name inside the lab (also its hostname and, later, its cluster node name)."""
        return f"h{self.index}"

    @property
    def netns(self) -> str:
        return f"{self.lab}-{self.name}"

    @property
    def lan_addr(self) -> str:
        return f"{LAN_NET}.{self.index}"

    @property
    def mig_addr(self) -> str:
        return f"{MIG_NET}.{self.index}"

    @property
    def mig_name(self) -> str:
        """Name that resolves to the host's migration-network address inside the lab."""
        return f"{self.name}{MIG_SUFFIX}"

    @property
    def dir(self) -> Path:
        return self.state_dir / self.name

    def path(self, inside: str) -> Path:
        """Host-side path of a file the simulated host sees at ``inside``."""
        for mount, sub in PRIVATE_DIRS + CLUSTER_DIRS:
            if inside == mount or inside.startswith(mount + "/"):
                return self.dir / sub / inside[len(mount) :].lstrip("/")
        raise ValueError(f"{inside} is not in a private directory of {self.name}")

    @property
    def libvirt_socket(self) -> Path:
        return self.path("/run/libvirt/libvirt-sock")

    @property
    def local_uri(self) -> str:
        """libvirt URI that reaches this host's daemon from the machine's root namespace."""
        return f"qemu+unix:///system?socket={self.libvirt_socket}"

    @property
    def peer_uri(self) -> str:
        """libvirt URI that peers use, over the migration network."""
        return f"qemu+tcp://{self.mig_name}/system"


# (mount point inside the host, sub-directory of the host's state directory)
PRIVATE_DIRS: tuple[tuple[str, str], ...] = (
    ("/run", "run"),
    ("/etc/libvirt", "etc-libvirt"),
    ("/var/lib/libvirt", "var-lib-libvirt"),
    ("/var/cache/libvirt", "var-cache-libvirt"),
    ("/var/log", "var-log"),
)


# Private to each host of a cluster lab: corosync and Pacemaker state and configuration.
CLUSTER_DIRS: tuple[tuple[str, str], ...] = (
    ("/etc/corosync", "etc-corosync"),
    ("/etc/pacemaker", "etc-pacemaker"),
    ("/var/lib/corosync", "var-lib-corosync"),
    ("/var/lib/pacemaker", "var-lib-pacemaker"),
)


@dataclass(frozen=True)
class LabLayout:
    """All names and paths of a lab called ``name`` with ``hosts`` simulated hosts."""

    name: str
    hosts: int
    root: Path

    @classmethod
    def create(
        cls, name: str = DEFAULT_NAME, hosts: int = 3, root: Path | None = None
    ) -> LabLayout:
        """Validate the name and the host count; raise UsageError with a clear reason."""
        if not _NAME_RE.match(name):
            raise UsageError(
                f"lab name {name!r} is invalid: use 1-12 lower-case letters or digits, "
                "starting with a letter"
            )
        if not 1 <= hosts <= MAX_HOSTS:
            raise UsageError(f"--hosts must be between 1 and {MAX_HOSTS}, not {hosts}")
        return cls(name=name, hosts=hosts, root=root or state_root())

    @property
    def state_dir(self) -> Path:
        return self.root / self.name

    @property
    def state_file(self) -> Path:
        return self.state_dir / "lab.json"

    @property
    def switch_netns(self) -> str:
        return f"{self.name}-sw"

    @property
    def client_netns(self) -> str:
        return f"{self.name}-client"

    @property
    def client_addr(self) -> str:
        return CLIENT_ADDR

    @property
    def hosts_file(self) -> Path:
        return self.state_dir / "hosts"

    @property
    def vm_dir(self) -> Path:
        return self.state_dir / "vms"

    @property
    def power_socket(self) -> Path:
        """The lab power switch's socket (fencing powers hosts off and on through it)."""
        return self.state_dir / "power.sock"

    @property
    def cluster_key(self) -> Path:
        """The Perf+ cluster key every host's migration daemon and agent use."""
        return self.state_dir / "cluster.key"

    @property
    def shared_dir(self) -> Path:
        """A directory every host sees at the same path (domain configurations live here,
        as they would on a cluster's shared or synchronised storage)."""
        return self.state_dir / "shared"

    def host(self, index: int) -> HostLayout:
        return HostLayout(lab=self.name, index=index, state_dir=self.state_dir)

    def all_hosts(self) -> list[HostLayout]:
        return [self.host(i) for i in range(1, self.hosts + 1)]

    def host_named(self, name: str) -> HostLayout:
        """The host called ``name`` (``h2``); UsageError if the lab has none of that name."""
        for host in self.all_hosts():
            if host.name == name:
                return host
        names = ", ".join(h.name for h in self.all_hosts())
        raise UsageError(f"unknown host {name!r}: this lab has {names}")

    def namespaces(self) -> list[str]:
        """Every network namespace the lab owns, switch first."""
        return [self.switch_netns, self.client_netns, *(h.netns for h in self.all_hosts())]

    def owns_netns(self, netns: str) -> bool:
        """Whether ``netns`` carries this lab's prefix (leftovers of a crashed build)."""
        return netns.startswith(f"{self.name}-")

    def guest_addr(self, slot: int) -> str:
        return f"{LAN_NET}.{GUEST_FIRST + slot}"

    def hosts_entries(self) -> str:
        """The /etc/hosts every simulated host sees."""
        lines = ["127.0.0.1 localhost", "::1 localhost"]
        for h in self.all_hosts():
            lines.append(f"{h.lan_addr} {h.name}")
            lines.append(f"{h.mig_addr} {h.mig_name}")
        lines.append(f"{CLIENT_ADDR} client")
        return "\n".join(lines) + "\n"
