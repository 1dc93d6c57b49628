"""Running external commands with a bound on time and a useful error."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence

from perfplus_agent.errors import CommandError

__all__ = ["run", "run_ok"]

DEFAULT_TIMEOUT = 30.0


def run(
    argv: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    check: bool = True,
    input_text: str | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` and return its result; raise CommandError on failure or timeout."""
    args = [str(a) for a in argv]
    try:
        res = subprocess.run(
            args,
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL if input_text is None else None,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        raise CommandError(args, None, err) from None
    except FileNotFoundError:
        raise CommandError(args, 127, f"{args[0]}: command not found") from None
    if check and res.returncode != 0:
        raise CommandError(args, res.returncode, res.stderr or res.stdout)
    return res


def run_ok(argv: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Run ``argv`` and tell whether it succeeded, without raising."""
    try:
        return run(argv, timeout=timeout, check=False).returncode == 0
    except CommandError:
        return False
