"""``fence_perfplus_lab``: a fence agent for the lab's simulated hosts.

It speaks the fence-agents conventions Pacemaker's fencer uses (options as ``key=value`` lines
on standard input, or ``-o ACTION -n HOST`` arguments; exit 0 for success, and for ``status``
0 = on, 2 = off) and asks the lab's power switch to power the host off or on. Fencing a host
kills every one of its processes, guests included, exactly like a power cut.
"""

from __future__ import annotations

import argparse
import sys

from lxml import etree

from perfplus_agent.lab.powerswitch import request

__all__ = ["main", "metadata"]

ACTIONS = ("on", "off", "reboot", "status", "list", "monitor", "metadata", "validate-all")


def metadata() -> str:
    root = etree.Element("resource-agent", name="fence_perfplus_lab",
                         shortdesc="Fence agent for perfplus lab hosts")
    etree.SubElement(root, "longdesc").text = (
        "Powers a simulated host of a perfplus lab off and on through the lab's power switch.")
    params = etree.SubElement(root, "parameters")
    for name, required, desc in (
        ("action", "0", "Fencing action"),
        ("plug", "1", "Name of the host to fence"),
        ("socket", "1", "Path of the lab power switch's socket"),
    ):
        p = etree.SubElement(params, "parameter", name=name, unique="0", required=required)
        etree.SubElement(p, "getopt", mixed=f"--{name}=[{name}]")
        etree.SubElement(p, "content", type="string",
                         **({"default": "reboot"} if name == "action" else {}))
        etree.SubElement(p, "shortdesc", lang="en").text = desc
    actions = etree.SubElement(root, "actions")
    for action in ACTIONS:
        etree.SubElement(actions, "action", name=action)
    return etree.tostring(root, encoding="unicode", pretty_print=True)


def _options(argv: list[str]) -> dict[str, str]:
    opts: dict[str, str] = {}
    if not argv and not sys.stdin.isatty():
        for line in sys.stdin.read().splitlines():
            key, sep, value = line.strip().partition("=")
            if sep and not key.startswith("#"):
                opts[key.strip()] = value.strip()
    ap = argparse.ArgumentParser(prog="fence_perfplus_lab")
    ap.add_argument("-o", "--action")
    ap.add_argument("-n", "--plug", "--port")
    ap.add_argument("--socket")
    args = ap.parse_args(argv)
    for key in ("action", "plug", "socket"):
        if getattr(args, key):
            opts[key] = getattr(args, key)
    if "plug" not in opts:
        for alias in ("port", "nodename"):
            if alias in opts:
                opts["plug"] = opts[alias]
                break
    return opts


def main(argv: list[str] | None = None) -> None:
    opts = _options(sys.argv[1:] if argv is None else argv)
    action = opts.get("action", "reboot")
    if action == "metadata":
        print(metadata())
        sys.exit(0)
    sock = opts.get("socket")
    if not sock:
        print("fence_perfplus_lab: socket= is required", file=sys.stderr)
        sys.exit(1)
    if action in ("monitor", "list", "validate-all"):
        sys.exit(0 if request(sock, "status h1").split()[0] in ("on", "off") else 1)
    host = opts.get("plug")
    if not host:
        print("fence_perfplus_lab: plug= (the host) is required", file=sys.stderr)
        sys.exit(1)
    steps = {"reboot": ("reboot",), "off": ("off",), "on": ("on",), "status": ("status",)}
    if action not in steps:
        print(f"fence_perfplus_lab: unknown action {action}", file=sys.stderr)
        sys.exit(1)
    for step in steps[action]:
        reply = request(sock, f"{step} {host}")
        if reply.startswith("error"):
            print(f"fence_perfplus_lab: {reply}", file=sys.stderr)
            sys.exit(1)
        if step == "status":
            sys.exit(0 if reply == "on" else 2)
    sys.exit(0)
