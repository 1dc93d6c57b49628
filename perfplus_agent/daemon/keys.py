"""The cluster key: 32 random bytes shared by every node's daemon, stored as hex, mode 0600."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from perfplus_agent.daemon.defaults import DEFAULT_KEY_FILE
from perfplus_agent.errors import PerfplusError

__all__ = ["DEFAULT_KEY_FILE", "KEY_SIZE", "KeyFileError", "generate_key_file", "load_key"]

KEY_SIZE = 32


class KeyFileError(PerfplusError):
    """The key file is missing, malformed, unreadable or readable by others."""


def generate_key_file(path: Path = DEFAULT_KEY_FILE, overwrite: bool = False) -> Path:
    """Write a new random key to ``path`` (mode 0600, created atomically); refuse to replace
    an existing key unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise KeyFileError(f"{path} already exists (a cluster key; remove it to make a new one)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(KEY_SIZE) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise KeyFileError(f"cannot write the key file {path}: {exc.strerror}") from None
    return path


def load_key(path: Path = DEFAULT_KEY_FILE) -> bytes:
    """The 32-byte key from ``path``; KeyFileError saying what is wrong otherwise."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise KeyFileError(
            f"no cluster key at {path}: create one with 'perfplus daemon keygen' and copy it "
            "to every node") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read the key file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise KeyFileError(f"the key file {path} is not a regular file")
        if mode & 0o077:
            raise KeyFileError(f"the key file {path} is accessible to others "
                               f"(mode {stat.S_IMODE(mode):04o}): chmod 600 it")
        raw = f.read(4 * KEY_SIZE + 1)
    try:
        key = bytes.fromhex(raw.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise KeyFileError(f"the key file {path} does not hold a hex key") from None
    if len(key) != KEY_SIZE:
        raise KeyFileError(f"the key in {path} is {len(key)} bytes; it must be {KEY_SIZE}")
    return key
