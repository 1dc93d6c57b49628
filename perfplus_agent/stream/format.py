"""QEMU 7.2's migration stream: the numbers a proxy needs (savevm.h, ram.c, multifd.h).

Only what the Perf+ stream rewriter reads is named here; everything else in the stream is
passed through untouched. Values are checked against QEMU v7.2.0 (Debian 12 ships 7.2.x,
whose stable patches do not change the wire format).
"""

from __future__ import annotations

__all__ = [
    "COMMAND_NAMES",
    "FILE_MAGIC",
    "FILE_VERSION",
    "MULTIFD_INIT_SIZE",
    "MULTIFD_MAGIC",
    "MULTIFD_PACKET_FIXED",
    "MULTIFD_VERSION",
    "RAM_IDSTR",
    "RAM_INSTANCE",
    "RAM_VERSION",
    "Cmd",
    "Section",
]

FILE_MAGIC = b"QEVM"  # be32 0x5145564D
FILE_VERSION = 3
MULTIFD_MAGIC = b"\x11\x22\x33\x44"
MULTIFD_VERSION = 1
MULTIFD_INIT_SIZE = 64  # MultiFDInit_t
MULTIFD_PACKET_FIXED = 320  # MultiFDPacket_t without its offset[] array
MULTIFD_FLAG_SYNC = 1
MULTIFD_COMPRESSION_MASK = 7 << 1

RAM_IDSTR = b"ram"
RAM_INSTANCE = 0
RAM_VERSION = 4


class Section:
    """Top-level element types of the main channel (savevm.h)."""

    EOF = 0x00
    START = 0x01
    PART = 0x02
    END = 0x03
    FULL = 0x04
    SUBSECTION = 0x05
    VMDESCRIPTION = 0x06
    CONFIGURATION = 0x07
    COMMAND = 0x08
    FOOTER = 0x7E


class Cmd:
    """QEMU_VM_COMMAND sub-commands (savevm.c)."""

    OPEN_RETURN_PATH = 1
    PING = 2
    POSTCOPY_ADVISE = 3
    POSTCOPY_LISTEN = 4
    POSTCOPY_RUN = 5
    POSTCOPY_RAM_DISCARD = 6
    PACKAGED = 7
    ENABLE_COLO = 8
    POSTCOPY_RESUME = 9
    RECV_BITMAP = 10


COMMAND_NAMES = {value: name for name, value in vars(Cmd).items() if name.isupper()}
# Commands a precopy migration may carry that change nothing about the RAM records.
HARMLESS_COMMANDS = frozenset({Cmd.OPEN_RETURN_PATH, Cmd.PING})
