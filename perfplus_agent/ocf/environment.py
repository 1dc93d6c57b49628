"""The environment Pacemaker (or a person) gives an OCF agent, parsed once into types."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from perfplus_agent.ocf.exitcodes import OcfError, OcfExit

__all__ = ["OcfEnvironment"]

RESKEY = "OCF_RESKEY_"
META = "OCF_RESKEY_CRM_meta_"
DEFAULT_TIMEOUT_S = 90.0


def _int_or_none(value: str | None) -> int | None:
    if value is None or value.strip() == "":
        return None
    try:
        return int(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class OcfEnvironment:
    """Action, resource identity, instance parameters and Pacemaker's meta attributes."""

    action: str
    instance: str = "VirtualDomain"
    reskeys: Mapping[str, str] = field(default_factory=dict)
    meta: Mapping[str, str] = field(default_factory=dict)
    check_level: int = 0
    ha_rsctmp: str = "/run/resource-agents"
    exit_reason_prefix: str = "ocf-exit-reason:"

    @classmethod
    def from_environ(cls, argv: list[str], environ: Mapping[str, str] | None = None
                     ) -> OcfEnvironment:
        """Parse ``argv`` (the action is the first argument) and ``environ``."""
        env = os.environ if environ is None else environ
        major = env.get("OCF_RA_VERSION_MAJOR")
        if major not in (None, "", "1"):
            raise OcfError(OcfExit.ERR_UNIMPLEMENTED,
                           f"OCF API version {major} is not supported (this agent speaks 1.x)")
        action = argv[1] if len(argv) > 1 else env.get("__OCF_ACTION", "")
        reskeys = {k[len(RESKEY):]: v for k, v in env.items()
                   if k.startswith(RESKEY) and not k.startswith(RESKEY + "CRM_")}
        meta = {k[len(META):]: v for k, v in env.items() if k.startswith(META)}
        return cls(
            action=action,
            instance=env.get("OCF_RESOURCE_INSTANCE", "VirtualDomain"),
            reskeys=reskeys,
            meta=meta,
            check_level=_int_or_none(env.get("OCF_CHECK_LEVEL")) or 0,
            ha_rsctmp=env.get("HA_RSCTMP", "/run/resource-agents"),
            exit_reason_prefix=env.get("OCF_EXIT_REASON_PREFIX", "ocf-exit-reason:"),
        )

    @property
    def interval_ms(self) -> int | None:
        return _int_or_none(self.meta.get("interval"))

    @property
    def is_probe(self) -> bool:
        """A one-time status check: monitor (or status) with interval 0 or unset."""
        return self.action in ("monitor", "status") and not self.interval_ms

    @property
    def timeout_s(self) -> float:
        """The operation's timeout as Pacemaker set it (90 s when run by hand)."""
        ms = _int_or_none(self.meta.get("timeout"))
        return ms / 1000.0 if ms and ms > 0 else DEFAULT_TIMEOUT_S

    @property
    def migrate_source(self) -> str | None:
        return self.meta.get("migrate_source") or None

    @property
    def migrate_target(self) -> str | None:
        return self.meta.get("migrate_target") or None

    @property
    def node(self) -> str | None:
        """This node's name as Pacemaker knows it (None when run by hand)."""
        return self.meta.get("on_node") or None
