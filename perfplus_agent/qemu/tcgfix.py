"""The one place that knows about QEMU 7.2's TCG dirty-tracking bug, and works around it.

QEMU before 9.0 (fixed upstream by "physmem: Fix migration dirty bitmap coherency with TCG
memory access", 2024) loses guest writes during a live migration under TCG when a RAM block's
size is a multiple of 256 KiB: its fast dirty-bitmap sync path clears the dirty bits without
resetting TCG's TLB dirty state, so a page written after the sync is never resent. A guest
then arrives with stale memory, silently. KVM is not affected.

libvirt rounds guest memory to whole MiB, so every libvirt guest under TCG has such a size.
The fix used here: make the main RAM block 8 KiB larger than a multiple of 256 KiB, which
sends QEMU down its slow (correct) path. Both ends of a migration must agree on the size, so
both run the wrapper. The wrapper is the ``<emulator>`` of every lab guest:

    qemu-system-x86_64-tcgfix [qemu arguments]   (installed as a console script)

It rewrites ``-m`` and the ``pc.ram`` memory backend that libvirt passes, then execs the real
QEMU. Its name starts with ``qemu-system-`` so that tools that look for QEMU processes by name
(the upstream VirtualDomain agent's pid fallback, for one) still find it.

``affected()`` answers whether a guest would hit the bug; migrations of such a guest are
refused by the caller (see ``check_migratable``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import libvirt
import libvirt_qemu
from lxml import etree

from perfplus_agent.errors import UsageError

__all__ = [
    "EXTRA_BYTES",
    "FIXED_IN",
    "affected",
    "check_migratable",
    "main",
    "main_ram_bytes",
    "qemu_version",
    "rewrite_argv",
    "wrapper_path",
]

EXTRA_BYTES = 8 * 1024
BAD_MULTIPLE = 256 * 1024
FIXED_IN = (9, 0)
REAL_QEMU = "qemu-system-x86_64"
WRAPPER_NAME = "qemu-system-x86_64-tcgfix"
_MEM_BACKEND_ID = "pc.ram"


def affected(qemu_version: tuple[int, int], tcg: bool, ram_bytes: int) -> bool:
    """Whether a guest with main RAM block ``ram_bytes`` would lose writes when migrated."""
    return tcg and qemu_version < FIXED_IN and ram_bytes % BAD_MULTIPLE == 0


def _uses_tcg(argv: list[str]) -> bool:
    for i, arg in enumerate(argv):
        nxt = argv[i + 1] if i + 1 < len(argv) else ""
        if arg == "-accel" and nxt.split(",")[0] == "tcg":
            return True
        if arg == "-machine" and re.search(r"(^|,)accel=tcg", nxt):
            return True
    return False


def _grow_m(value: str) -> str:
    """``-m 257`` -> ``-m 263176k``; ``-m size=263168k,...`` -> ``size=263176k,...``."""
    if value.isdigit():
        return f"{int(value) * 1024 + EXTRA_BYTES // 1024}k"
    m = re.match(r"^(size=)?(\d+)([kKmMgG]?)(.*)$", value)
    if not m:
        return value
    scale = {"": 1024, "k": 1, "m": 1024, "g": 1024 * 1024}[m.group(3).lower()]
    kib = int(m.group(2)) * scale + EXTRA_BYTES // 1024
    return f"{m.group(1) or ''}{kib}k{m.group(4)}"


def _grow_backend(value: str) -> str:
    """Add EXTRA_BYTES to the ``pc.ram`` backend given as JSON (libvirt's form)."""
    if not value.startswith("{"):
        return value
    try:
        obj = json.loads(value)
    except ValueError:
        return value
    if obj.get("id") != _MEM_BACKEND_ID or not isinstance(obj.get("size"), int):
        return value
    obj["size"] += EXTRA_BYTES
    return json.dumps(obj, separators=(",", ":"))


def rewrite_argv(argv: list[str]) -> list[str]:
    """QEMU arguments with the main RAM block grown by EXTRA_BYTES (TCG guests only)."""
    if not _uses_tcg(argv):
        return list(argv)
    out: list[str] = []
    prev = ""
    for arg in argv:
        if prev == "-m":
            out.append(_grow_m(arg))
        elif prev == "-object":
            out.append(_grow_backend(arg))
        else:
            out.append(arg)
        prev = arg
    return out


def wrapper_path() -> Path:
    """Absolute path of the installed wrapper (next to this interpreter, else on PATH)."""
    beside = Path(sys.executable).parent / WRAPPER_NAME
    if beside.exists():
        return beside
    found = shutil.which(WRAPPER_NAME)
    if found is None:
        raise FileNotFoundError(f"{WRAPPER_NAME} is not installed: reinstall perfplus-agent")
    return Path(found)


def main() -> None:
    """Entry point of the ``<emulator>`` wrapper: exec the real QEMU, arguments fixed."""
    real = shutil.which(REAL_QEMU, path="/usr/local/bin:/usr/bin:/bin")
    if real is None:
        sys.stderr.write(f"{WRAPPER_NAME}: {REAL_QEMU} not found: install qemu-system-x86\n")
        sys.exit(127)
    os.execv(real, [real, *rewrite_argv(sys.argv[1:])])


def qemu_version(conn: libvirt.virConnect) -> tuple[int, int]:
    """QEMU's (major, minor) as the libvirt daemon behind ``conn`` reports it."""
    version = conn.getVersion()  # major * 1_000_000 + minor * 1_000 + micro
    return version // 1_000_000, (version // 1_000) % 1_000


def main_ram_bytes(dom: libvirt.virDomain) -> int | None:
    """Size of the running guest's main RAM block as QEMU reports it (None if unknown).

    A diagnostic: it goes through libvirt's QMP pass-through, which marks the domain as
    tainted and can take a second on a TCG guest, so the migration guard does not use it.
    """
    try:
        reply = libvirt_qemu.qemuMonitorCommand(dom, '{"execute": "query-memdev"}', 0)
    except libvirt.libvirtError:
        return None
    for dev in json.loads(reply).get("return", []):
        if dev.get("id") == _MEM_BACKEND_ID:
            return int(dev["size"])
    return None


def check_migratable(dom: libvirt.virDomain) -> None:
    """Refuse (UsageError) to migrate a guest that QEMU's TCG bug would silently corrupt.

    libvirt hands QEMU whole MiB, so a TCG guest on an affected QEMU is safe only when its
    emulator is this module's wrapper, which grows the RAM block off the bad multiple.
    """
    root = etree.fromstring(dom.XMLDesc(0).encode())
    version = qemu_version(dom.connect())
    if root.get("type") != "qemu" or version >= FIXED_IN:
        return
    emulator = root.findtext("devices/emulator") or ""
    if os.path.basename(emulator) == WRAPPER_NAME:
        return
    ram_kib = int(root.findtext("currentMemory") or root.findtext("memory") or 0)
    raise UsageError(
        f"refusing to migrate {dom.name()}: QEMU {version[0]}.{version[1]} under TCG loses guest "
        f"writes during migration when guest RAM ({ram_kib} KiB) is a multiple of 256 KiB, "
        f"which libvirt always passes; run the guest with the {WRAPPER_NAME} emulator"
    )
