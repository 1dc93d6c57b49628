"""The meta-data of ``ocf:perfplus:VirtualDomain`` and the parameter documentation, both
generated from ``PARAMETERS`` and ``ACTIONS``.

The XML follows OCF 1.1 but stays within ``ra-api-1.dtd`` (the DTD ``ocf-tester`` validates
against with ``xmllint --valid``), so it declares no ``reloadable``, ``unique-group`` or
``reload-agent``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lxml import etree

from perfplus_agent import __version__
from perfplus_agent.ocf.params import PARAMETERS, ParamSpec

__all__ = [
    "ACTIONS",
    "AGENT_LONGDESC",
    "AGENT_SHORTDESC",
    "DOCTYPE",
    "OCF_VERSION",
    "UPSTREAM_ACTIONS",
    "ActionSpec",
    "UpstreamAction",
    "metadata_xml",
    "parameters_markdown",
]

OCF_VERSION = "1.1"
DOCTYPE = '<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">'
XML_DECLARATION = '<?xml version="1.0"?>'
LANG = "en"

AGENT_SHORTDESC = ("Manages a libvirt virtual machine; a start live-migrates it when it already "
                   "runs on another node")
AGENT_LONGDESC = (
    "Manages a QEMU/KVM virtual machine through libvirt. It is a drop-in replacement for "
    "ocf:heartbeat:VirtualDomain and accepts the same parameters. Before a start it asks every "
    "other node whether the domain already runs there: if one does, the start live-migrates "
    "the domain here instead of booting a second copy; if a node cannot be asked and was not "
    "fenced, the start fails. Live migrations follow a convergence policy (migration_policy) "
    "and are aborted before the operation's timeout, which leaves the guest running on its "
    "source. Every libvirt call is bounded in time, and a guest paused after an error counts "
    "as failed."
)


@dataclass(frozen=True)
class ActionSpec:
    """One advertised action, with Pacemaker's suggested minimum timeout."""

    name: str
    timeout_s: int
    interval_s: int | None = None
    depth: int | None = None


# reload-agent is implemented (it re-validates: every action reads the parameters afresh) but
# not advertised: ra-api-1.dtd, which ocf-tester validates against, has no such action name.
ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("start", 90),
    ActionSpec("stop", 90),
    ActionSpec("monitor", 30, interval_s=10, depth=0),
    ActionSpec("status", 30, interval_s=10, depth=0),
    ActionSpec("migrate_to", 120),
    ActionSpec("migrate_from", 60),
    ActionSpec("validate-all", 10),
    ActionSpec("meta-data", 5),
)


@dataclass(frozen=True)
class UpstreamAction:
    """An action ``ocf:heartbeat:VirtualDomain`` advertises, and how ours differs."""

    name: str
    advertised: str
    difference: str


UPSTREAM_ACTIONS: tuple[UpstreamAction, ...] = (
    UpstreamAction("start", "timeout 90s",
                   "Asks every other node first and live-migrates the domain here if one runs "
                   "it; refuses to start when a node cannot be asked and was not fenced."),
    UpstreamAction("stop", "timeout 90s",
                   "Graceful shutdown in shutdown_mode until stop_escalation_margin seconds "
                   "are left, then destroy; with libvirtd down, the QEMU process is stopped "
                   "directly instead of failing."),
    UpstreamAction("status", "timeout 30s, interval 10s, depth 0",
                   "The same as monitor (monitor_scripts and utilization included)."),
    UpstreamAction("monitor", "timeout 30s, interval 10s, depth 0",
                   "A crashed guest, or one paused after an error, is a failure; libvirt calls "
                   "are time-bounded and, when libvirtd does not answer, the QEMU process "
                   "itself is looked for."),
    UpstreamAction("migrate_from", "timeout 60s",
                   "Waits for the domain within the operation's timeout and fails with a "
                   "reason if it does not arrive, instead of looping until the timeout."),
    UpstreamAction("migrate_to", "timeout 120s",
                   "Driven by migration_policy and aborted before the operation's timeout, "
                   "leaving the guest running on the source; succeeds if the target already "
                   "runs the domain."),
    UpstreamAction("meta-data", "timeout 5s",
                   "Declares OCF 1.1 (upstream: 1.0) and the extra parameters."),
    UpstreamAction("validate-all", "timeout 5s",
                   "Also checks that the XML defines a domain, the snapshot directory, the "
                   "migration policy and perfplus; with OCF_CHECK_LEVEL 10 or more, that "
                   "libvirt answers."),
)


# -- XML ---------------------------------------------------------------------------------------
def _seconds(value: int) -> str:
    return f"{value}s"


def _flag(value: bool) -> str:
    return "1" if value else "0"


def _descriptions(parent: etree._Element, longdesc: str, shortdesc: str) -> None:
    etree.SubElement(parent, "longdesc", lang=LANG).text = longdesc
    etree.SubElement(parent, "shortdesc", lang=LANG).text = shortdesc


def _parameter(parent: etree._Element, spec: ParamSpec) -> None:
    elem = etree.SubElement(parent, "parameter", name=spec.name, unique=_flag(spec.unique),
                            required=_flag(spec.required))
    _descriptions(elem, spec.longdesc, spec.shortdesc)
    content = etree.SubElement(elem, "content", type=spec.content)
    if spec.default is not None:
        content.set("default", spec.default)


def _action(parent: etree._Element, spec: ActionSpec) -> None:
    elem = etree.SubElement(parent, "action", name=spec.name, timeout=_seconds(spec.timeout_s))
    if spec.interval_s is not None:
        elem.set("interval", _seconds(spec.interval_s))
    if spec.depth is not None:
        elem.set("depth", str(spec.depth))


def metadata_xml(parameters: Iterable[ParamSpec] = PARAMETERS,
                 actions: Iterable[ActionSpec] = ACTIONS) -> str:
    """The agent's meta-data document (OCF 1.1, valid against ra-api-1.dtd)."""
    root = etree.Element("resource-agent", name="VirtualDomain", version=__version__)
    etree.SubElement(root, "version").text = OCF_VERSION
    _descriptions(root, AGENT_LONGDESC, AGENT_SHORTDESC)
    params = etree.SubElement(root, "parameters")
    for spec in parameters:
        _parameter(params, spec)
    acts = etree.SubElement(root, "actions")
    for action in actions:
        _action(acts, action)
    body = etree.tostring(root, encoding="unicode", doctype=DOCTYPE, pretty_print=True)
    # No encoding in the declaration: crmsh parses the text as a Python str, and lxml refuses
    # a str that declares an encoding. The output is ASCII, so nothing depends on it.
    return XML_DECLARATION + "\n" + body


# -- Markdown ----------------------------------------------------------------------------------
_REGENERATE = (".venv/bin/python -c 'from perfplus_agent.ocf.metadata import "
               "parameters_markdown as m; print(m(), end=\"\")' > docs/virtualdomain-parameters.md")


def _md(text: str) -> str:
    """Text safe inside a Markdown table cell (no pipes, no raw HTML tags)."""
    return text.replace("|", "\\|").replace("<", "\\<")


def _default(spec: ParamSpec) -> str:
    if spec.default is None:
        return "(unset)"
    return f'`"{spec.default}"`' if spec.default == "" else f"`{spec.default}`"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _param_name(spec: ParamSpec) -> str:
    flags = [f for f, on in (("required", spec.required), ("unique", spec.unique)) if on]
    return f"`{spec.name}`" + (f" ({', '.join(flags)})" if flags else "")


def _shared_rows(specs: Iterable[ParamSpec]) -> list[list[str]]:
    return [[_param_name(s), s.content, _default(s), _md(s.shortdesc),
             _md(s.difference) or "same"] for s in specs]


def _own_rows(specs: Iterable[ParamSpec]) -> list[list[str]]:
    return [[_param_name(s), s.content, _default(s), _md(s.longdesc), _md(s.difference)]
            for s in specs]


def _action_rows() -> list[list[str]]:
    ours = {a.name: a for a in ACTIONS}
    rows = []
    for up in UPSTREAM_ACTIONS:
        mine = ours.get(up.name)
        advertised = _advertised(mine) if mine else "not advertised"
        rows.append([f"`{up.name}`", up.advertised, advertised, _md(up.difference)])
    return rows


def _advertised(action: ActionSpec) -> str:
    parts = [f"timeout {_seconds(action.timeout_s)}"]
    if action.interval_s is not None:
        parts.append(f"interval {_seconds(action.interval_s)}")
    if action.depth is not None:
        parts.append(f"depth {action.depth}")
    return ", ".join(parts)


def _reference(specs: Iterable[ParamSpec]) -> list[str]:
    lines: list[str] = []
    for s in specs:
        lines += ["", f"### `{s.name}`", "",
                  f"{s.content}, default {_default(s)}. {_md(s.longdesc)}"]
        if s.upstream and s.difference:
            lines += ["", f"*Difference from upstream:* {_md(s.difference)}"]
    return lines


def parameters_markdown(parameters: Sequence[ParamSpec] = PARAMETERS) -> str:
    """``docs/virtualdomain-parameters.md``: upstream parameters and actions mapped to ours."""
    shared = [p for p in parameters if p.upstream]
    own = [p for p in parameters if not p.upstream]
    lines = [
        "# ocf:perfplus:VirtualDomain: parameters and actions",
        "",
        "<!-- Generated by perfplus_agent.ocf.metadata.parameters_markdown(); do not edit.",
        f"     Regenerate with: {_REGENERATE} -->",
        "",
        f"Every parameter of `ocf:heartbeat:VirtualDomain` ({len(shared)}) is accepted under "
        "the same name, with the same type and default, so changing the provider of a "
        "resource from `heartbeat` to `perfplus` is enough. \"same\" in the last column means "
        "the behaviour is the upstream one.",
        "",
        "## Parameters of ocf:heartbeat:VirtualDomain",
        "",
        *_table(("Parameter", "Type", "Default", "What it is", "Difference from upstream"),
                _shared_rows(shared)),
        "",
        "## Parameters only ocf:perfplus:VirtualDomain has",
        "",
        *_table(("Parameter", "Type", "Default", "Description", "Why"), _own_rows(own)),
        "",
        "## Actions",
        "",
        *_table(("Action", "Upstream advertises", "We advertise", "Difference from upstream"),
                _action_rows()),
        "",
        "`reload-agent` is accepted (it re-validates the parameters; every action reads them "
        "afresh) but not advertised, because `ra-api-1.dtd`, which `ocf-tester` validates the "
        "meta-data against, does not allow that action name. `usage` prints the usage and "
        "exits 0 (upstream: exit 3). Any other action exits 3.",
        "",
        "## Parameter reference",
        *_reference(parameters),
    ]
    return "\n".join(lines) + "\n"
