"""The actions of ``ocf:perfplus:VirtualDomain``.

The rules that make it more than a drop-in:

* **start never boots a second copy.** Before starting, every peer is asked whether it runs
  the domain. If one does, start live-migrates it here. If a peer cannot be asked, start
  fails (Pacemaker then fences or retries), unless Pacemaker says that peer was fenced.
* **A failed migration leaves the guest on its source.** libvirt's migration is atomic; the
  engine aborts it before the operation's timeout, so Pacemaker never sees a timeout while the
  guest is half-way.
* **Every wait is bounded by the operation's timeout** (``OCF_RESKEY_CRM_meta_timeout``),
  and every libvirt call by a fraction of it.
* **Monitor tells the truth**: a guest paused after an I/O error is a failure, and when
  libvirtd does not answer the QEMU process itself is looked for, in bounded time.
* **stop is idempotent and escalates**: graceful shutdown in the requested mode, then
  destroy with ``stop_escalation_margin`` seconds left; with libvirtd down, the QEMU process
  is stopped directly rather than failing (which would fence the node).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import libvirt
from lxml import etree

from perfplus_agent.adapters.cluster import Cluster
from perfplus_agent.adapters.domain_config import DomainConfig, read_domain_config
from perfplus_agent.adapters.hypervisor import (
    UNREACHABLE,
    DomainState,
    Hypervisor,
    HypervisorError,
    StateReport,
)
from perfplus_agent.adapters.migration_daemon import (
    ANSWER_MARGIN_S as DAEMON_ANSWER_MARGIN_S,
)
from perfplus_agent.adapters.migration_daemon import (
    DaemonMigrationError,
    migrate_via_daemon,
)
from perfplus_agent.adapters.qemu_process import find_qemu, kill_qemu
from perfplus_agent.agent.deadline import Deadline
from perfplus_agent.agent.migrate_options import parse_migrate_options
from perfplus_agent.agent.migration_retry import reason_in_states, reason_not_to_retry
from perfplus_agent.agent.peers import PeerAnswer, ask_peers
from perfplus_agent.agent.statefile import StateFile
from perfplus_agent.agent.uris import (
    DEFAULT_HYPERVISOR,
    daemon_address,
    migrate_uri,
    remote_uri,
)
from perfplus_agent.daemon.keys import load_key
from perfplus_agent.errors import PerfplusError, UsageError
from perfplus_agent.migration.convergence import ConvergenceController, policy_named
from perfplus_agent.migration.live import (
    DEFAULT_FLAGS,
    MigrationError,
    MigrationRequest,
    live_migrate,
)
from perfplus_agent.ocf.environment import OcfEnvironment
from perfplus_agent.ocf.exitcodes import OcfError, OcfExit
from perfplus_agent.ocf.params import VirtualDomainParams

__all__ = ["SHUTDOWN_MODES", "VirtualDomainAgent"]

log = logging.getLogger("perfplus_agent.agent")

SHUTDOWN_MODES = {  # keys: params.SHUTDOWN_MODE_NAMES (a unit test keeps them equal)
    "acpi": libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN,
    "agent": libvirt.VIR_DOMAIN_SHUTDOWN_GUEST_AGENT,
    "initctl": libvirt.VIR_DOMAIN_SHUTDOWN_INITCTL,
    "signal": libvirt.VIR_DOMAIN_SHUTDOWN_SIGNAL,
    "paravirt": libvirt.VIR_DOMAIN_SHUTDOWN_PARAVIRT,
}
POLL_S = 0.25
LIBVIRT_CALL_MAX_S = 10.0
# A libvirt daemon that does not answer is asked again (every RETRY_PERIOD_S) for this share
# of the time an action has left before the action gives up on it.
PATIENCE_SHARE = 1 / 3
RETRY_PERIOD_S = 1.0
T = TypeVar("T")
MONITOR_SCRIPT_MAX_S = 30.0
SHUTDOWN_RESEND_S = 5.0


class VirtualDomainAgent:
    """One invocation of the agent: parameters, environment and the adapters it talks to."""

    def __init__(self, env: OcfEnvironment, params: VirtualDomainParams,
                 cluster: Cluster | None = None) -> None:
        self.env = env
        self.params = params
        self.cluster = cluster or Cluster()
        margin = params.stop_escalation_margin if env.action == "stop" else 5.0
        self.deadline = Deadline(env.timeout_s, margin_s=float(margin))
        call_s = min(LIBVIRT_CALL_MAX_S, max(2.0, env.timeout_s / 4))
        self.uri = params.hypervisor or DEFAULT_HYPERVISOR
        self.hv = Hypervisor(self.uri, timeout=call_s)
        self.state_file = StateFile(env.ha_rsctmp, env.instance)
        self._config: DomainConfig | None = None

    # -- helpers -------------------------------------------------------------------------
    def config(self) -> DomainConfig:
        if self._config is None:
            self._config = read_domain_config(self.params.config)
        return self._config

    def known_name(self) -> str | None:
        """The domain's name from the configuration, or from the state file when the
        configuration is unreadable here (probe and stop must still find the domain)."""
        try:
            return self.config().name
        except OcfError as exc:
            cached = self.state_file.domain_name()
            log.warning("%s; using the remembered domain name %s", exc, cached or "(none)")
            return cached

    def local_node(self) -> str:
        return self.env.node or self.cluster.local_name()

    def peer_uri(self, node: str) -> str:
        p = self.params
        return remote_uri(node, hypervisor=p.hypervisor, transport=p.migration_transport or "",
                          user=p.migration_user or "", suffix=p.migration_network_suffix or "",
                          remoteuri=p.remoteuri)

    def stream_uri(self, node: str) -> str | None:
        p = self.params
        return migrate_uri(node, migrateuri=p.migrateuri,
                           options_uri=parse_migrate_options(p.migrate_options).migrateuri,
                           suffix=p.migration_network_suffix or "", port=p.migrateport)

    def wait_for(self, name: str, wanted: set[DomainState], budget_s: float) -> DomainState:
        """Poll the local state until it is in ``wanted`` or ``budget_s`` passes."""
        end = time.monotonic() + max(0.0, budget_s)
        while True:
            state = self.hv.state(name).state
            if state in wanted or time.monotonic() >= end:
                return state
            time.sleep(POLL_S)

    # -- monitor -------------------------------------------------------------------------
    def monitor(self) -> OcfExit:
        name = self.known_name()
        if name is None:
            return OcfExit.NOT_RUNNING
        try:
            report = self.hv.state(name)
        except UNREACHABLE as exc:
            return self._monitor_without_libvirt(name, str(exc))
        except HypervisorError as exc:
            raise OcfError(OcfExit.ERR_GENERIC, str(exc)) from None
        if report.state is DomainState.ABSENT:
            if not self.env.is_probe:
                log.info("domain %s is not running here (%s)", name, report.detail)
            return OcfExit.NOT_RUNNING
        if report.state is DomainState.FAILED:
            raise OcfError(OcfExit.ERR_GENERIC, f"domain {name} is {report.detail}")
        self.state_file.update(domain=name)
        self._run_monitor_scripts()
        if not self.env.is_probe:
            self._update_utilization(name)
            if self.params.save_config_on_stop:
                self._save_config(name)
        return OcfExit.SUCCESS

    def _monitor_without_libvirt(self, name: str, why: str) -> OcfExit:
        pids = find_qemu(name)
        if pids:
            log.warning("%s; QEMU of %s is running (pid %s): reporting it running",
                        why, name, ", ".join(map(str, pids)))
            return OcfExit.SUCCESS
        log.warning("%s; no QEMU process of %s on this node: reporting it stopped", why, name)
        return OcfExit.NOT_RUNNING

    def _run_monitor_scripts(self) -> None:
        for script in (self.params.monitor_scripts or "").split():
            budget = min(MONITOR_SCRIPT_MAX_S, max(1.0, self.deadline.remaining()))
            try:
                res = subprocess.run([script], capture_output=True, text=True, timeout=budget,
                                     check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise OcfError(OcfExit.ERR_GENERIC, f"monitor script {script}: {exc}") from None
            if res.returncode != 0:
                tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or [""]
                raise OcfError(OcfExit.ERR_GENERIC, f"monitor script {script} exited "
                               f"{res.returncode}: {tail[0]}")

    def _update_utilization(self, name: str) -> None:
        p = self.params
        wanted = {"cpu": (p.autoset_utilization_cpu, p.unset_utilization_cpu),
                  "host_memory": (p.autoset_utilization_host_memory,
                                  p.unset_utilization_host_memory),
                  "hv_memory": (p.autoset_utilization_hv_memory, p.unset_utilization_hv_memory)}
        if not any(a or u for a, u in wanted.values()):
            return
        try:
            vcpus, mib = self.hv.info(name)
        except (HypervisorError, *UNREACHABLE):
            return
        values = {"cpu": str(vcpus), "host_memory": str(mib), "hv_memory": str(mib)}
        last = self.state_file.load().get("utilization", {})
        assert isinstance(last, dict)
        now = {}
        for attr, (autoset, unset) in wanted.items():
            value = values[attr] if autoset else None
            if autoset or unset:
                now[attr] = value
                if last.get(attr, "unknown") != value:  # only touch the CIB on a change
                    self.cluster.set_utilization(self.env.instance, attr, value)
        self.state_file.update(utilization=now)

    def _save_config(self, name: str) -> None:
        dom = self.hv.domain(name)
        if dom is None:
            return
        flags = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE
        try:
            xml = dom.XMLDesc(flags)
            etree.fromstring(xml.encode())
        except (libvirt.libvirtError, etree.XMLSyntaxError) as exc:
            log.warning("not saving the configuration of %s: %s", name, exc)
            return
        path = Path(self.params.config)
        if path.exists() and path.read_text() == xml:
            return
        tmp = path.with_name(f".{path.name}.perfplus-tmp")
        tmp.write_text(xml)
        os.replace(tmp, path)
        log.info("saved the configuration of %s to %s", name, path)
        if self.params.sync_config_on_stop:
            subprocess.run(["csync2", "-x", str(path)], capture_output=True, timeout=60,
                           check=False)

    # -- start ---------------------------------------------------------------------------
    def start(self) -> OcfExit:
        self.validate()
        cfg = self.config()
        self.state_file.update(domain=cfg.name)
        try:
            local = self._patiently(lambda: self.hv.state(cfg.name), "libvirt here")
        except UNREACHABLE as exc:
            raise OcfError(OcfExit.ERR_GENERIC, f"cannot start {cfg.name}: {exc}") from None
        if local.state is DomainState.RUNNING:
            log.info("domain %s is already running here", cfg.name)
            return OcfExit.SUCCESS
        if local.state is DomainState.STOPPING:
            self.wait_for(cfg.name, {DomainState.ABSENT}, self.deadline.remaining() / 2)
        if local.state is DomainState.FAILED:
            log.warning("domain %s is %s here: destroying it before the start", cfg.name,
                        local.detail)
            self.hv.destroy(cfg.name)
        holder = self._holder_among_peers(cfg)
        if holder is not None:
            self._migrate_in(cfg, holder)
        else:
            self._cold_start(cfg)
        state = self.wait_for(cfg.name, {DomainState.RUNNING}, self.deadline.remaining())
        if state is not DomainState.RUNNING:
            raise OcfError(OcfExit.ERR_GENERIC, f"domain {cfg.name} is not running after start "
                           f"({state.value})")
        self._run_monitor_scripts()
        return OcfExit.SUCCESS

    def _patiently(self, call: Callable[[], T], what: str) -> T:
        """``call()``, asked again while it finds libvirt unreachable, for up to
        PATIENCE_SHARE of the time left (a restarting libvirtd is back within seconds)."""
        end = time.monotonic() + self.deadline.remaining() * PATIENCE_SHARE
        while True:
            try:
                return call()
            except UNREACHABLE as exc:
                if time.monotonic() + RETRY_PERIOD_S >= end:
                    raise
                log.info("%s does not answer (%s): asking again for up to %.0f s", what, exc,
                         end - time.monotonic())
                time.sleep(RETRY_PERIOD_S)

    def peers(self) -> list[str]:
        """The nodes that might run the domain: the cluster's, or the ``peers`` parameter."""
        me = self.local_node()
        nodes = self.cluster.nodes()
        names = [n.name for n in nodes] if nodes else list(self.params.peers)
        return [n for n in names if n and n != me]

    def _holder_among_peers(self, cfg: DomainConfig) -> PeerAnswer | None:
        """The one peer running the domain, None if none does; OcfError when that cannot be
        known or several run it."""
        budget = min(LIBVIRT_CALL_MAX_S, max(2.0, self.deadline.remaining() / 4))
        end = time.monotonic() + max(budget, self.deadline.remaining() * PATIENCE_SHARE)
        answers = ask_peers(cfg.name, self.peers(), self.peer_uri, budget)
        while True:  # a restarting libvirtd answers within seconds: ask the silent ones again
            silent = [a for a in answers if a.state is None]
            if not silent or time.monotonic() + RETRY_PERIOD_S >= end:
                break
            log.info("cannot ask %s yet (%s): asking again for up to %.0f s",
                     ", ".join(a.node for a in silent), silent[0].detail,
                     end - time.monotonic())
            time.sleep(RETRY_PERIOD_S)
            again = {a.node: a for a in ask_peers(
                cfg.name, [a.node for a in silent], self.peer_uri,
                max(1.0, min(budget, end - time.monotonic())))}
            answers = [again.get(a.node, a) for a in answers]
        for answer in silent:
            if self.cluster.was_fenced(answer.node):
                log.info("peer %s cannot be asked but was fenced: it runs nothing", answer.node)
                answers.remove(answer)
            else:
                raise OcfError(OcfExit.ERR_GENERIC,
                               f"cannot ask {answer.node} whether it runs {cfg.name} "
                               f"({answer.detail}); refusing to start a second copy")
        holders = [a for a in answers if a.runs_it]
        if len(holders) > 1:
            raise OcfError(OcfExit.ERR_GENERIC, f"domain {cfg.name} runs on "
                           + " and ".join(a.node for a in holders) + "; not starting another")
        return holders[0] if holders else None

    def _migrate_in(self, cfg: DomainConfig, holder: PeerAnswer) -> None:
        """Live-migrate the domain from the peer that runs it to this node."""
        me = self.local_node()
        log.info("domain %s runs on %s: live-migrating it here instead of starting a copy",
                 cfg.name, holder.node)
        source = Hypervisor(holder.uri, timeout=self.hv.timeout)
        try:
            result = self._migrate_retrying(cfg.name, source, self.hv, holder.node, me)
        except MigrationError as exc:
            raise OcfError(OcfExit.ERR_GENERIC, f"{cfg.name} runs on {holder.node}: {exc}") \
                from None
        except (*UNREACHABLE, HypervisorError) as exc:
            raise OcfError(OcfExit.ERR_GENERIC, f"migrating {cfg.name} from {holder.node}: "
                           f"{exc}") from None
        finally:
            source.close()
        self._log_result(cfg.name, holder.node, me, result)

    def _cold_start(self, cfg: DomainConfig) -> None:
        p = self.params
        if p.start_resources:
            self._start_resources(self.hv.conn, cfg)
        image = Path(p.snapshot, f"{cfg.name}.state") if p.snapshot else None
        if image is not None and image.exists():
            log.info("restoring %s from %s", cfg.name, image)
            self.hv.restore(str(image))
            image.unlink()
            return
        log.info("starting %s (it runs on no other node)", cfg.name)
        self.hv.create(cfg.xml, cfg.name)

    @staticmethod
    def _start_resources(conn: libvirt.virConnect, cfg: DomainConfig) -> None:
        try:
            for pool_name in cfg.pools:
                pool = conn.storagePoolLookupByName(pool_name)
                if pool.isActive():
                    pool.refresh(0)
                else:
                    pool.create(0)
            for net_name in cfg.networks:
                net = conn.networkLookupByName(net_name)
                if not net.isActive():
                    net.create()
        except libvirt.libvirtError as exc:
            raise OcfError(OcfExit.ERR_GENERIC, "starting the pools and networks of "
                           f"{cfg.name} failed: {exc.get_error_message()}") from None

    # -- migration -----------------------------------------------------------------------
    def _migrate_retrying(self, name: str, source: Hypervisor, dest: Hypervisor,
                          source_node: str, dest_node: str) -> str:
        """Live-migrate ``name``; a failed try is made again (``migration_retries``) when
        migration_retry.py finds that safe; the last try's MigrationError otherwise."""
        retries_left = self.params.migration_retries
        while True:
            dom = source.domain(name)
            if dom is None:
                raise OcfError(OcfExit.ERR_GENERIC,
                               f"domain {name} vanished from {source_node} before its migration")
            try:
                return self._live_migrate(dom, source_node=source_node, dest_node=dest_node,
                                          dest_conn=dest.conn)
            except MigrationError as exc:
                why_not = (reason_not_to_retry(exc, self._migration_time_left(), retries_left)
                           or reason_in_states(self._state_after_failure(source, name),
                                               self._state_after_failure(dest, name))
                           # again: asking may have waited for a restarting libvirtd
                           or reason_not_to_retry(exc, self._migration_time_left(),
                                                  retries_left))
                if why_not is not None:
                    if retries_left > 0:
                        log.info("not trying the migration of %s again: %s", name, why_not)
                    raise
                retries_left -= 1
                log.warning("%s; %s still runs it and %s has nothing of it: trying again "
                            "(%.0f s left)", exc, source_node, dest_node,
                            self._migration_time_left())

    def _migration_time_left(self) -> float:
        """What a migration started now would get (the daemon keeps a margin to answer)."""
        margin = DAEMON_ANSWER_MARGIN_S if self.params.perfplus else 0.0
        return self.deadline.remaining() - margin

    def _state_after_failure(self, hv: Hypervisor, name: str) -> StateReport | None:
        """The domain's state there after a failed try, None when libvirt does not answer.
        The connection is opened afresh (a libvirtd that died with the migration leaves a
        dead one) and a libvirtd that is not there is asked again for a while (it may be
        restarting)."""
        hv.close()
        try:
            return self._patiently(lambda: hv.state(name), f"libvirt at {hv.uri}")
        except (*UNREACHABLE, HypervisorError):
            return None

    def _live_migrate(self, dom: libvirt.virDomain, source_node: str, dest_node: str,
                      dest_conn: libvirt.virConnect | None) -> str:
        """Live-migrate ``dom`` from ``source_node`` to ``dest_node``, through the source's
        Perf+ daemon when ``perfplus`` is set; a one-line summary for the log."""
        p = self.params
        if p.perfplus:
            return self._migrate_via_daemon(dom.name(), source_node, dest_node)
        try:
            policy = policy_named(p.migration_policy).with_initial_downtime(p.migration_downtime)
        except UsageError as exc:
            raise OcfError(OcfExit.ERR_CONFIGURED, str(exc)) from None
        options = parse_migrate_options(p.migrate_options)
        flags = DEFAULT_FLAGS | options.flags
        if policy.auto_converge:
            flags |= libvirt.VIR_MIGRATE_AUTO_CONVERGE
        if policy.postcopy:
            flags |= libvirt.VIR_MIGRATE_POSTCOPY
        if dom.isPersistent():
            flags |= libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
        req = MigrationRequest(
            dest_uri=self.peer_uri(dest_node), migrate_uri=self.stream_uri(dest_node),
            bandwidth_mib=p.migration_speed, timeout_s=max(1.0, self.deadline.remaining()),
            abort_wait_s=max(1.0, self.deadline.margin_s - self.hv.timeout / 2),
            call_s=self.hv.timeout,
            flags=flags, extra_params=options.params,
        )
        result = live_migrate(dom, req, dest_conn=dest_conn,
                              controller=ConvergenceController(policy))
        s = result.stats
        return (f"{result.wall_s:.2f} s, downtime {s.downtime_ms} ms, {s.memory_iteration} "
                f"iterations, {s.data_processed / 2**20:.1f} MiB sent")

    def _migrate_via_daemon(self, name: str, source_node: str, dest_node: str) -> str:
        p = self.params
        suffix = p.migration_network_suffix or ""
        try:
            done = migrate_via_daemon(
                daemon_address(source_node, suffix, p.perfplus_port), Path(p.perfplus_key_file),
                domain=name, dest_node=dest_node,
                dest_address=daemon_address(dest_node, suffix, p.perfplus_port),
                dest_uri=self.peer_uri(dest_node),
                timeout_s=max(1.0, self._migration_time_left()),
                bandwidth_mib=p.migration_speed)
        except DaemonMigrationError as exc:
            raise MigrationError(str(exc)) from None
        return done.summary()

    @staticmethod
    def _log_result(name: str, src: str, dst: str, summary: str) -> None:
        log.info("live migration of %s %s -> %s done: %s", name, src, dst, summary)

    def migrate_to(self) -> OcfExit:
        target = self.env.migrate_target
        if not target:
            raise OcfError(OcfExit.ERR_CONFIGURED,
                           "migrate_to needs OCF_RESKEY_CRM_meta_migrate_target")
        self.validate()
        cfg = self.config()
        local = self.hv.state(cfg.name)
        if local.state is not DomainState.RUNNING:
            return self._already_migrated(cfg, target, local.detail)
        dest = Hypervisor(self.peer_uri(target), timeout=self.hv.timeout)
        try:
            if self.params.start_resources:
                self._start_resources(dest.conn, cfg)
            if self.params.save_config_on_stop:
                self._save_config(cfg.name)
            result = self._migrate_retrying(cfg.name, self.hv, dest, self.local_node(), target)
        except MigrationError as exc:
            raise OcfError(OcfExit.ERR_GENERIC, f"{exc} ({self._state_here(cfg.name)})") \
                from None
        except (*UNREACHABLE, HypervisorError) as exc:
            raise OcfError(OcfExit.ERR_GENERIC, f"live migration of {cfg.name} to {target} "
                           f"failed: {exc}") from None
        finally:
            dest.close()
        self._log_result(cfg.name, self.local_node(), target, result)
        return OcfExit.SUCCESS

    def _state_here(self, name: str) -> str:
        """The domain's state on this node for an exit reason, if there is time to ask."""
        if self.deadline.remaining_total() < self.hv.timeout + 1.0:
            return "no time left to ask libvirt for its state here"
        try:
            return f"here it is {self.hv.state(name).state.value}"
        except (*UNREACHABLE, HypervisorError) as exc:
            return f"its state here is unknown: {exc}"

    def _already_migrated(self, cfg: DomainConfig, target: str, detail: str) -> OcfExit:
        """migrate_to found nothing here: success only if the target already runs it."""
        dest = Hypervisor(self.peer_uri(target), timeout=self.hv.timeout)
        try:
            there = dest.state(cfg.name).state
        except (*UNREACHABLE, HypervisorError):
            there = None
        finally:
            dest.close()
        if there is DomainState.RUNNING:
            log.info("domain %s already runs on %s", cfg.name, target)
            return OcfExit.SUCCESS
        raise OcfError(OcfExit.ERR_GENERIC,
                       f"cannot migrate {cfg.name} to {target}: it is {detail} here")

    def migrate_from(self) -> OcfExit:
        self.validate()
        cfg = self.config()
        self.state_file.update(domain=cfg.name)
        state = self.wait_for(cfg.name, {DomainState.RUNNING}, self.deadline.remaining())
        if state is not DomainState.RUNNING:
            source = self.env.migrate_source or "its source"
            raise OcfError(OcfExit.ERR_GENERIC, f"domain {cfg.name} did not arrive from "
                           f"{source} ({state.value} here)")
        self._run_monitor_scripts()
        log.info("domain %s arrived from %s", cfg.name, self.env.migrate_source or "a peer")
        return OcfExit.SUCCESS

    # -- stop ----------------------------------------------------------------------------
    def stop(self) -> OcfExit:
        name = self.known_name()
        if name is None:
            log.info("no domain known for this resource on this node: nothing to stop")
            return OcfExit.SUCCESS
        try:
            state = self.hv.state(name).state
        except UNREACHABLE as exc:
            return self._stop_without_libvirt(name, str(exc))
        if state is DomainState.ABSENT:
            log.info("domain %s is already stopped", name)
            self.state_file.forget()
            return OcfExit.SUCCESS
        try:
            return self._stop_with_libvirt(name, state)
        except UNREACHABLE as exc:
            # libvirtd stopped answering mid-way (e.g. it still waits on a peer for a failed
            # migration's job): the QEMU process is stopped directly, as destroy would.
            return self._stop_without_libvirt(name, str(exc))

    def _stop_with_libvirt(self, name: str, state: DomainState) -> OcfExit:
        p = self.params
        if p.save_config_on_stop:
            self._save_config(name)  # before any kind of stop, force_stop included
        if not p.force_stop and state is not DomainState.FAILED:
            if p.snapshot:
                self._save_snapshot(name)
            else:
                self._graceful_shutdown(name)
        if self.hv.state(name).state is not DomainState.ABSENT:
            log.info("destroying %s", name)
            self.hv.destroy(name)
            state = self.wait_for(name, {DomainState.ABSENT},
                                  max(1.0, self.deadline.remaining_total() - 1.0))
            if state is not DomainState.ABSENT:
                raise OcfError(OcfExit.ERR_GENERIC, f"domain {name} survived destroy ({state})")
        self.state_file.forget()
        return OcfExit.SUCCESS

    def _graceful_shutdown(self, name: str) -> None:
        flags = 0
        for mode in (self.params.shutdown_mode or "").split(","):
            if mode.strip():
                flags |= SHUTDOWN_MODES[mode.strip()]
        # The request is repeated: a guest that was still booting (or busy) when the first one
        # came may have missed it, and a lost ACPI event would cost the whole stop timeout.
        state = DomainState.RUNNING
        while not self.deadline.expired():
            try:
                self.hv.shutdown(name, flags)
            except HypervisorError as exc:
                log.warning("graceful shutdown of %s refused (%s): destroying it", name, exc)
                return
            budget = min(SHUTDOWN_RESEND_S, self.deadline.remaining())
            state = self.wait_for(name, {DomainState.ABSENT}, budget)
            if state is DomainState.ABSENT:
                return
        if state is not DomainState.ABSENT:
            log.warning("domain %s did not shut down within %.0f s: destroying it", name,
                        self.deadline.work_s)

    def _save_snapshot(self, name: str) -> None:
        target = Path(self.params.snapshot or ".", f"{name}.state")
        try:
            self.hv.save(name, str(target))
            log.info("saved %s to %s", name, target)
        except HypervisorError as exc:
            log.warning("saving %s failed (%s): stopping it instead", name, exc)
            self._graceful_shutdown(name)

    def _stop_without_libvirt(self, name: str, why: str) -> OcfExit:
        if not find_qemu(name):
            log.warning("%s; no QEMU process of %s here: stopped", why, name)
            return OcfExit.SUCCESS
        log.warning("%s; stopping the QEMU process of %s directly", why, name)
        if kill_qemu(name, grace_s=max(1.0, min(10.0, self.deadline.remaining() / 2))):
            return OcfExit.SUCCESS
        raise OcfError(OcfExit.ERR_GENERIC, f"{why}; the QEMU process of {name} survives")

    # -- validate ------------------------------------------------------------------------
    def validate(self) -> OcfExit:
        """Parameters, the configuration file, the tools the options need; with
        OCF_CHECK_LEVEL >= 10 also that libvirt answers."""
        p = self.params
        self.config()
        if p.perfplus:
            try:
                load_key(Path(p.perfplus_key_file))
            except PerfplusError as exc:
                raise OcfError(OcfExit.ERR_INSTALLED,
                               f"perfplus=true needs the Perf+ cluster key on this node: {exc}; "
                               "make one with 'perfplus daemon keygen' and copy it to every "
                               "node") from None
        try:
            policy_named(p.migration_policy)
        except UsageError as exc:
            raise OcfError(OcfExit.ERR_CONFIGURED, str(exc)) from None
        parse_migrate_options(p.migrate_options)
        for option, value in (("backingfile", p.backingfile), ("copyindirs", p.copyindirs)):
            if value:
                raise OcfError(OcfExit.ERR_CONFIGURED,
                               f"{option} is not supported by ocf:perfplus:VirtualDomain yet")
        if p.sync_config_on_stop and shutil.which("csync2") is None:
            raise OcfError(OcfExit.ERR_INSTALLED, "sync_config_on_stop needs csync2")
        if p.snapshot and not Path(p.snapshot).is_dir():
            raise OcfError(OcfExit.ERR_INSTALLED, f"snapshot directory {p.snapshot} is missing")
        if self.env.check_level >= 10:
            try:
                self.hv.conn  # noqa: B018 - opening it is the check
            except UNREACHABLE as exc:
                raise OcfError(OcfExit.ERR_GENERIC, str(exc)) from None
        return OcfExit.SUCCESS
