"""The OCF entry point: parse the environment once, run one action, turn every outcome into
an OCF exit code (and a one-line exit reason for Pacemaker), never a traceback."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Mapping

from perfplus_agent.bounded import waited_s
from perfplus_agent.ocf.environment import OcfEnvironment
from perfplus_agent.ocf.exitcodes import OcfError, OcfExit
from perfplus_agent.ocf.logging_setup import configure_logging, write_exit_reason
from perfplus_agent.ocf.metadata import metadata_xml
from perfplus_agent.ocf.params import VirtualDomainParams, parse_params

__all__ = ["ACTIONS", "main", "run"]

log = logging.getLogger("perfplus_agent.ocf")

ACTIONS = ("start", "stop", "monitor", "status", "migrate_to", "migrate_from", "validate-all",
           "reload-agent", "meta-data", "usage")
USAGE = "usage: VirtualDomain {" + "|".join(ACTIONS) + "}"


def _lenient_params(env: OcfEnvironment, err: OcfError) -> VirtualDomainParams:
    """Parameters good enough for a probe or a stop when the configured ones are invalid:
    those actions must still find out (and stop) what runs, not fail on a typo."""
    log.warning("invalid parameters (%s): %s continues with the defaults", err, env.action)
    keep = {k: env.reskeys[k] for k in ("config", "hypervisor") if env.reskeys.get(k)}
    keep.setdefault("config", "(unset)")
    return parse_params(keep)


def _dispatch(env: OcfEnvironment, params: VirtualDomainParams) -> OcfExit:
    # Imported here so that meta-data and usage answer fast, without loading libvirt.
    from perfplus_agent.agent.virtual_domain import VirtualDomainAgent  # noqa: PLC0415

    agent = VirtualDomainAgent(env, params)
    t0 = time.monotonic()
    handlers = {
        "start": agent.start,
        "stop": agent.stop,
        "monitor": agent.monitor,
        "status": agent.monitor,
        "migrate_to": agent.migrate_to,
        "migrate_from": agent.migrate_from,
        "validate-all": agent.validate,
        "reload-agent": agent.validate,  # every parameter is read afresh by each action
    }
    watchdog = _watchdog(env)
    try:
        return handlers[env.action]()
    finally:
        if watchdog is not None:
            watchdog.cancel()
        agent.hv.close()
        log.debug("timing: %s took %.1f ms, of which %.1f ms waiting on libvirt", env.action,
                  (time.monotonic() - t0) * 1000, waited_s() * 1000)


def _watchdog(env: OcfEnvironment) -> threading.Timer | None:
    """The last line of defence for deadlines: shortly before Pacemaker's timeout an action
    still blocked in a call (libvirt waiting on a dead peer, say) ends with an error and a
    reason, so that Pacemaker never has to kill the agent and guess."""
    if env.timeout_s <= 0:
        return None
    margin = max(0.5, min(1.0, env.timeout_s * 0.05))

    def fire() -> None:
        reason = (f"{env.action} gave up {margin:.1f} s before its {env.timeout_s:.0f} s "
                  "timeout: a call it made did not return; its outcome is unknown")
        write_exit_reason(reason, env.exit_reason_prefix)
        log.error("%s", reason)
        log.error("%s was blocked in: %s", env.action, _blocked_in(threading.main_thread()))
        logging.shutdown()
        os._exit(int(OcfExit.ERR_GENERIC))

    timer = threading.Timer(env.timeout_s - margin, fire)
    timer.daemon = True
    timer.start()
    return timer


def _blocked_in(thread: threading.Thread, depth: int = 4) -> str:
    """Where ``thread`` is now: its innermost frames, innermost first (for the log, so that a
    call that did not return can be named after the fact)."""
    frame = sys._current_frames().get(thread.ident or -1)
    if frame is None:
        return "(unknown)"
    frames = traceback.extract_stack(frame)[-depth:]
    return " <- ".join(f"{f.name} ({os.path.basename(f.filename)}:{f.lineno})"
                       for f in reversed(frames))


def run(argv: list[str], environ: Mapping[str, str] | None = None) -> int:
    """Run the action named in ``argv``; return the OCF exit code."""
    try:
        env = OcfEnvironment.from_environ(argv, environ)
    except OcfError as exc:
        write_exit_reason(str(exc))
        return exc.code
    if env.action == "meta-data":
        sys.stdout.write(metadata_xml())
        return OcfExit.SUCCESS
    if env.action in ("usage", "help", "-h", "--help"):
        print(USAGE)
        return OcfExit.SUCCESS
    configure_logging(env.instance, environ)
    if env.action not in ACTIONS:
        write_exit_reason(f"unknown action {env.action!r}; {USAGE}", env.exit_reason_prefix)
        return OcfExit.ERR_UNIMPLEMENTED
    quiet = env.is_probe or env.action == "stop"
    try:
        try:
            params = parse_params(env.reskeys)
        except OcfError as exc:
            if not quiet:
                raise
            params = _lenient_params(env, exc)
        return _dispatch(env, params)
    except OcfError as exc:
        if not (env.is_probe and exc.code == OcfExit.NOT_RUNNING):
            write_exit_reason(str(exc), env.exit_reason_prefix)
        log.error("%s: %s", env.action, exc)
        return exc.code
    except Exception as exc:  # the last line of defence: a reason, not a traceback
        log.debug("unexpected failure", exc_info=True)
        write_exit_reason(f"internal error during {env.action}: {exc}", env.exit_reason_prefix)
        return OcfExit.ERR_GENERIC


def main() -> None:
    sys.exit(int(run(sys.argv)))


if __name__ == "__main__":
    main()
