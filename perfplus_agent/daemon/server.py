"""The daemon: authenticated control requests, source proxies and incoming relays.

One listening TCP port carries everything. Every connection starts with the handshake (a
peer without the cluster key is dropped without a word after at most 5 s); then it is a
control connection (JSON requests and responses) until a ``data`` request turns it into a
data channel of a prepared incoming migration. Connections, migrations and incoming
sessions are bounded in number; every wait is bounded in time.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from perfplus_agent import __version__
from perfplus_agent.daemon.client import DEFAULT_PORT, DaemonError, request
from perfplus_agent.daemon.handshake import HANDSHAKE_TIMEOUT_S, HandshakeError
from perfplus_agent.daemon.libvirt_migrate import migrate_domain
from perfplus_agent.daemon.protocol import (
    DataOpen,
    Migrate,
    Ping,
    PrepareIncoming,
    ProtocolError,
    Request,
    encode,
    error,
    ok,
    parse_request,
)
from perfplus_agent.daemon.relay import IncomingRelay, RelayConfig, RelaySession, SourceRelay
from perfplus_agent.daemon.secure_channel import (
    ChannelError,
    ChannelTimeout,
    SecureChannel,
    accept_secure,
)
from perfplus_agent.daemon.sockets import TICK_S, format_address, parse_address, tune
from perfplus_agent.daemon.transform import TransformFactory, identity_factory
from perfplus_agent.errors import PerfplusError
from perfplus_agent.stream import StreamSession
from perfplus_agent.stream.transform import filter_factory

__all__ = ["DaemonServer", "MigrateFn", "ServerConfig", "libvirt_migrate_fn"]

REPORTED_ITERATIONS = 64  # per-iteration figures in an answer: the first and the last ones

log = logging.getLogger(__name__)

PORT_BUSY = "port-busy"
PREPARE_ATTEMPTS = 8

# (request, proxy port) -> JSON-ready figures; raises PerfplusError when the migration fails.
MigrateFn = Callable[[Migrate, int], dict[str, Any]]


@dataclass(frozen=True)
class ServerConfig:
    """Where the daemon listens and how much it takes on."""

    listen: tuple[str, int] = ("0.0.0.0", DEFAULT_PORT)
    port_range: tuple[int, int] = (49700, 49799)  # proxy ports (source) = QEMU ports (dest)
    proxy_host: str = "127.0.0.1"  # the source proxy listens here; QEMU connects to it
    qemu_host: str = "127.0.0.1"  # the destination QEMU listens here (libvirt listen_address)
    libvirt_uri: str = "qemu:///system"
    max_migrations: int = 4  # outgoing, and separately incoming
    max_connections: int = 32  # control connections being served at once
    handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S  # a peer that does not authenticate
    request_timeout_s: float = 60.0  # an idle control connection is closed after this
    drain_timeout_s: float = 10.0  # after libvirt's success, wait this for channels to end
    relay: RelayConfig = field(default_factory=RelayConfig)


def libvirt_migrate_fn(config: ServerConfig) -> MigrateFn:
    """The real migration: libvirt at ``config.libvirt_uri`` through the proxy port."""
    def run(msg: Migrate, port: int) -> dict[str, Any]:
        return migrate_domain(config.libvirt_uri, msg, port, config.proxy_host)

    return run


class DaemonServer:
    """The per-node daemon. ``start()`` returns once listening; ``stop()`` ends everything."""

    def __init__(self, key: bytes, config: ServerConfig | None = None,
                 migrate_fn: MigrateFn | None = None,
                 make_transform: TransformFactory | None = None) -> None:
        """``make_transform`` replaces the Perf+ filter of migrations that ask for filtering
        (tests); by default each such migration gets its own Perf+ stream session."""
        self.key = key
        self.config = config or ServerConfig()
        self.migrate_fn = migrate_fn or libvirt_migrate_fn(self.config)
        self.make_transform = make_transform
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._connections = threading.BoundedSemaphore(self.config.max_connections)
        self._migrations = threading.BoundedSemaphore(self.config.max_migrations)
        self._incoming: dict[str, IncomingRelay] = {}
        self._outgoing: dict[int, SourceRelay] = {}  # by proxy port
        lo, hi = self.config.port_range
        self._ports = itertools.cycle(range(lo, hi + 1))
        self._acceptor = threading.Thread(target=self._accept_loop, name="daemon/accept",
                                          daemon=True)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        host, port = self.config.listen
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host, port))
            listener.listen(64)
            listener.settimeout(TICK_S)
        except OSError as exc:
            listener.close()
            raise PerfplusError(f"cannot listen on {format_address((host, port))}: "
                                f"{exc.strerror or exc}") from None
        self._listener = listener
        self._acceptor.start()
        log.info("perfplus daemon %s listening on %s", __version__,
                 format_address(self.address))

    @property
    def address(self) -> tuple[str, int]:
        assert self._listener is not None
        host, port = self._listener.getsockname()[:2]
        return host, port

    def serve_forever(self) -> None:
        """Block until ``stop()`` (from a signal handler or another thread)."""
        while not self._stop.wait(1.0):
            pass

    def stop(self) -> None:
        self._stop.set()
        self._acceptor.join(2.0)
        with self._lock:
            relays: list[RelaySession] = [*self._incoming.values(), *self._outgoing.values()]
        for relay in relays:
            relay.abort("the daemon is stopping")

    # -- connections ----------------------------------------------------------------------

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        try:
            while not self._stop.is_set():
                try:
                    sock, peer = listener.accept()
                except TimeoutError:
                    continue
                except OSError as exc:
                    log.error("accept failed: %s", exc)
                    continue
                if not self._connections.acquire(blocking=False):
                    log.warning("too many connections: dropping %s", format_address(peer[:2]))
                    sock.close()
                    continue
                threading.Thread(target=self._serve, args=(sock, peer[:2]), daemon=True,
                                 name=f"daemon/conn/{peer[0]}").start()
        finally:
            listener.close()

    def _serve(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        who = format_address(peer)
        handed_over = False
        channel: SecureChannel | None = None
        try:
            tune(sock)
            try:
                channel = accept_secure(sock, self.key, self.config.request_timeout_s,
                                        self.config.handshake_timeout_s)
            except HandshakeError as exc:
                log.warning("refused connection from %s: %s", who, exc)
                return
            handed_over = self._requests(channel, who)
        except Exception:
            log.exception("connection from %s failed", who)
        finally:
            if not handed_over:
                if channel is not None:
                    channel.close()
                else:
                    sock.close()
            self._connections.release()

    def _requests(self, channel: SecureChannel, who: str) -> bool:
        """Answer requests until the peer is done; True if the connection became a data
        channel (then it belongs to a relay)."""
        while not self._stop.is_set():
            try:
                frame = channel.recv(timeout=self.config.request_timeout_s)
            except ChannelTimeout:
                log.info("closing idle connection from %s", who)
                return False
            except ChannelError as exc:
                log.info("connection from %s ended: %s", who, exc)
                return False
            if not frame:
                return False
            try:
                req = parse_request(frame)
            except ProtocolError as exc:
                log.warning("bad request from %s: %s", who, exc)
                answer = error(f"bad request: {exc}")
            else:
                if isinstance(req, DataOpen):
                    self._data(req, channel, who)
                    return True
                answer = self._handle(req, who)
            try:
                frame = encode(answer)
            except ProtocolError as exc:  # never leave a client without an answer
                log.error("answer to %s not sent: %s", who, exc)
                frame = encode(error(f"the daemon's answer could not be sent: {exc}"))
            try:
                channel.send(frame)
            except ChannelError as exc:
                log.info("cannot answer %s: %s", who, exc)
                return False
        return False

    def _handle(self, req: Request, who: str) -> dict[str, Any]:
        try:
            if isinstance(req, Ping):
                return ok(version=__version__, node=socket.gethostname())
            if isinstance(req, PrepareIncoming):
                return self._prepare(req, who)
            if isinstance(req, Migrate):
                return self._migrate(req, who)
        except PerfplusError as exc:
            return error(str(exc))
        return error("unsupported request")

    # -- destination side -----------------------------------------------------------------

    def _prepare(self, req: PrepareIncoming, who: str) -> dict[str, Any]:
        host = self.config.qemu_host
        with self._lock:
            if len(self._incoming) >= self.config.max_migrations:
                return error(f"busy: {len(self._incoming)} incoming migrations already")
            if not _port_free(host, req.port):
                return error(f"port {req.port} is in use on this node", code=PORT_BUSY)
            session = secrets.token_hex(16)
            relay = IncomingRelay(session, (host, req.port), channels=req.channels,
                                  config=self.config.relay, on_end=self._incoming_ended)
            self._incoming[session] = relay
        relay.start()
        log.info("prepared incoming migration %s from %s: port %d, %d multifd channels",
                 session[:8], who, req.port, req.channels)
        return ok(session=session)

    def _incoming_ended(self, relay: RelaySession) -> None:
        with self._lock:
            self._incoming.pop(relay.session_id, None)
        log.info("incoming migration %s ended: %s", relay.session_id[:8],
                 relay.error or "complete")

    def _data(self, req: DataOpen, channel: SecureChannel, who: str) -> None:
        with self._lock:
            relay = self._incoming.get(req.session)
        if relay is None:
            log.warning("data channel from %s for an unknown migration", who)
            with contextlib.suppress(ChannelError, ProtocolError):
                channel.send(encode(error("unknown migration session")), timeout=1.0)
            channel.close()
            return
        relay.attach(req.channel, channel)

    # -- source side ----------------------------------------------------------------------

    def _migrate(self, req: Migrate, who: str) -> dict[str, Any]:
        if not self._migrations.acquire(blocking=False):
            return error(f"busy: {self.config.max_migrations} migrations already running")
        try:
            log.info("migrating %s to %s for %s", req.domain, req.dest_node, who)
            dest = parse_address(req.dest_address, DEFAULT_PORT)
            stream = self._stream_session(req)
            make = (self.make_transform or filter_factory(stream)) if stream else identity_factory
            relay = self._open_proxy(req, dest, make)
            try:
                figures = self.migrate_fn(req, relay.port)
            except PerfplusError as exc:
                relay.close()
                stats = relay.stats()
                reason = str(exc)
                if stats["error"]:
                    reason += f" (relay: {stats['error']})"
                log.warning("migration of %s failed: %s", req.domain, reason)
                return error(reason, relay=stats, perfplus=_perfplus(stream))
            relay.wait(self.config.drain_timeout_s)
            relay.close()
            log.info("migrated %s to %s%s", req.domain, req.dest_node, _summary(stream))
            return ok(domain=req.domain, dest_node=req.dest_node, port=relay.port,
                      **figures, relay=relay.stats(), perfplus=_perfplus(stream))
        finally:
            self._migrations.release()

    @staticmethod
    def _stream_session(req: Migrate) -> StreamSession | None:
        """A fresh Perf+ session (new key, empty tags) for a migration filtered or measured;
        None for ``off`` (the relay carries the bytes untouched)."""
        if req.filter == "off":
            return None
        return StreamSession(req.channels, req.algorithm, dropping=req.filter == "perfplus")

    def _open_proxy(self, req: Migrate, dest: tuple[str, int],
                    make_transform: TransformFactory) -> SourceRelay:
        """A started source proxy on a port free here and at the destination."""
        lo, hi = self.config.port_range
        refused = 0
        for _ in range(hi - lo + 1):
            port = next(self._ports)
            with self._lock:
                if port in self._outgoing:
                    continue
            if not _port_free(self.config.proxy_host, port):
                continue
            answer = self._ask(dest, {"op": "prepare-incoming", "port": port,
                                      "channels": req.channels})
            if not answer["ok"]:
                if answer.get("code") == PORT_BUSY and refused < PREPARE_ATTEMPTS:
                    refused += 1
                    continue
                raise PerfplusError(f"the destination daemon refused: {answer['error']}")
            relay = SourceRelay((self.config.proxy_host, port), dest, self.key,
                                answer["session"], channels=req.channels,
                                make_transform=make_transform,
                                config=self.config.relay, on_end=self._outgoing_ended)
            try:
                relay.start()
            except OSError:
                continue  # taken in the meantime; the destination's session expires
            with self._lock:
                self._outgoing[port] = relay
            return relay
        raise PerfplusError(f"no free migration port in {lo}-{hi}")

    def _ask(self, dest: tuple[str, int], message: dict[str, Any]) -> dict[str, Any]:
        try:
            answer = request(dest, self.key, message, self.config.relay.connect_timeout_s)
        except DaemonError as exc:
            raise PerfplusError(f"destination {exc}") from None
        if answer["ok"] and not isinstance(answer.get("session"), str):
            raise PerfplusError("the destination daemon answered without a session")
        return answer

    def _outgoing_ended(self, relay: RelaySession) -> None:
        if isinstance(relay, SourceRelay):
            with self._lock:
                if self._outgoing.get(relay.port) is relay:
                    del self._outgoing[relay.port]


def _filter_mode(stream: StreamSession | None) -> str:
    """The ``filter`` mode a migration ran with (see protocol.FILTER_MODES)."""
    if stream is None:
        return "off"
    return "perfplus" if stream.dropping else "measure"


def _perfplus(stream: StreamSession | None) -> dict[str, Any] | None:
    """The filter's own figures for a response (None when the filter was off). ``filter``
    is the requested mode; ``mode`` what the rewriter did (filter, measure, passthrough)."""
    if stream is None:
        return None
    figures = stream.stats.as_dict()
    iterations = figures["iterations"]
    if len(iterations) > REPORTED_ITERATIONS:  # a long migration: the answer must stay small
        head = REPORTED_ITERATIONS // 4
        tail = REPORTED_ITERATIONS - head
        figures["iterations"] = iterations[:head] + iterations[-tail:]
        figures["iterations_omitted"] = len(iterations) - REPORTED_ITERATIONS
    return {**figures, "filter": _filter_mode(stream), "algorithm": stream.algorithm,
            "table_bytes": stream.memory_bytes}


def _summary(stream: StreamSession | None) -> str:
    if stream is None:
        return " (filter off)"
    t = stream.stats.totals()
    if not stream.dropping:
        return (f" (Perf+ measure, {stream.stats.mode}: {t['pages_unchanged']} of "
                f"{t['pages_seen']} pages unchanged but sent, {t['bytes_in']} bytes in, "
                f"{t['bytes_out']} out)")
    return (f" (Perf+ {stream.stats.mode}: {t['pages_dropped']} of {t['pages_seen']} pages "
            f"unchanged and not sent, {t['bytes_in']} bytes in, {t['bytes_out']} out)")


def _port_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound now (checked, then released)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True
