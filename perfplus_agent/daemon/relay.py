"""The data plane: QEMU's migration channels carried between two daemons, bounded.

Source node: :class:`SourceRelay` listens on 127.0.0.1:<port>, where the source QEMU connects
(first the main channel, then one connection per multifd channel). For each accepted
connection, in accept order and synchronously, it opens an authenticated, encrypted data
channel to the destination daemon and waits for its answer before accepting the next one, so
the destination QEMU sees the channels in the same order (it tells them apart by order only).

Destination node: :class:`IncomingRelay` receives those channels (through the server, which
authenticates them) and connects each to the destination QEMU at 127.0.0.1:<port>, in order.

Each channel pumps both directions in two threads: source → destination through the
transform (the Perf+ filter), destination → source (QEMU's return path) unchanged. At most one
chunk per direction is held in user space and kernel buffers are fixed, so QEMU's bandwidth
estimate stays honest. Any failure — peer dead or gone, garbage, a filter exception, a stall
— tears down every channel of the migration: QEMU sees its sockets close, fails the
migration, and the guest keeps running on the source.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from perfplus_agent.daemon.handshake import HandshakeError
from perfplus_agent.daemon.heap import TRIM_EVERY, release_free_memory
from perfplus_agent.daemon.protocol import ProtocolError, decode_response, encode, error, ok
from perfplus_agent.daemon.secure_channel import (
    ChannelError,
    ChannelTimeout,
    SecureChannel,
    connect_secure,
)
from perfplus_agent.daemon.sockets import DEFAULT_SOCKBUF, TICK_S, recv_some, send_all, tune
from perfplus_agent.daemon.transform import (
    FIRST_BYTES,
    Transform,
    TransformFactory,
    channel_kind,
    identity_factory,
)

__all__ = ["ChannelStats", "IncomingRelay", "RelayConfig", "RelaySession", "SourceRelay"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RelayConfig:
    """Sizes and time limits of the data plane (seconds, bytes)."""

    sockbuf: int = DEFAULT_SOCKBUF  # SO_SNDBUF/SO_RCVBUF of every data socket
    chunk: int = 256 * 1024  # bytes read from a socket at once (one full frame)
    connect_timeout_s: float = 5.0  # open a data channel / reach the local QEMU
    send_timeout_s: float = 30.0  # a peer that takes nothing for this long is dead
    idle_timeout_s: float = 60.0  # no byte in any channel, either direction
    setup_timeout_s: float = 60.0  # every channel connected within this after start


@dataclass
class ChannelStats:
    """One channel's figures. ``bytes_in``/``bytes_out``: source → destination bytes read
    and written by this side (they differ on the source when the filter drops bytes)."""

    index: int
    kind: str = "unknown"
    bytes_in: int = 0
    bytes_out: int = 0
    return_bytes: int = 0
    frames_sent: int = 0
    frames_received: int = 0
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    clean: bool = False

    @property
    def wall_s(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "kind": self.kind, "bytes_in": self.bytes_in,
                "bytes_out": self.bytes_out, "return_bytes": self.return_bytes,
                "frames_sent": self.frames_sent, "frames_received": self.frames_received,
                "wall_s": round(self.wall_s, 3), "clean": self.clean}


class _Failure(Exception):
    """A pump failed; the text says where (becomes the migration's relay error)."""


class _Channel:
    """One QEMU connection and its data channel: two pump threads, then both sockets closed."""

    def __init__(self, session: RelaySession, index: int, plain: socket.socket,
                 secure: SecureChannel, make_transform: TransformFactory | None) -> None:
        self.session = session
        self.index = index
        self.plain = plain
        self.secure = secure
        self.make_transform = make_transform  # None on the destination side
        self.transform: Transform | None = None
        self._first = b""  # the source channel's first bytes, until the filter exists
        self.stats = ChannelStats(index)
        self._pending = 2
        self._eofs = 0
        self._lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        plain.settimeout(TICK_S)
        secure.timeout = session.config.send_timeout_s

    def start(self) -> None:
        if self.make_transform is not None:
            pumps = [("up", self._read_plain, self._write_filtered, self._end_filtered),
                     ("down", self._read_secure, self._write_plain, self._end_plain)]
        else:
            pumps = [("up", self._read_secure, self._write_plain, self._end_plain),
                     ("down", self._read_plain, self._write_secure, self._end_secure)]
        for name, read, write, end in pumps:
            thread = threading.Thread(target=self._pump, args=(name, read, write, end),
                                      name=f"relay/{self.session.session_id[:8]}/{self.index}"
                                           f"/{name}", daemon=True)
            self.threads.append(thread)
        for thread in self.threads:
            thread.start()

    # -- endpoints ------------------------------------------------------------------------

    def _read_plain(self) -> bytes | None:
        try:
            return recv_some(self.plain, self.session.config.chunk)
        except OSError as exc:
            raise _Failure(f"the local QEMU connection failed: {exc.strerror or exc}") from None

    def _write_plain(self, data: bytes) -> None:
        deadline = time.monotonic() + self.session.config.send_timeout_s
        try:
            send_all(self.plain, data, deadline)
        except TimeoutError:
            raise _Failure("the local QEMU stopped reading") from None
        except OSError as exc:
            raise _Failure(f"the local QEMU connection failed: {exc.strerror or exc}") from None

    def _end_plain(self) -> None:
        with contextlib.suppress(OSError):
            self.plain.shutdown(socket.SHUT_WR)

    def _read_secure(self) -> bytes | None:
        try:
            return self.secure.recv(timeout=TICK_S)
        except ChannelTimeout:
            return None
        except ChannelError as exc:
            raise _Failure(f"the data link to the peer daemon failed: {exc}") from None

    def _write_secure(self, data: bytes) -> None:
        try:
            self.secure.send(data)
        except ChannelError as exc:
            raise _Failure(f"the data link to the peer daemon failed: {exc}") from None

    def _end_secure(self) -> None:
        try:
            self.secure.send_eof()
        except ChannelError as exc:
            raise _Failure(f"the data link to the peer daemon failed: {exc}") from None

    # -- the filter (source → destination on the source side) -----------------------------

    def _write_filtered(self, data: bytes) -> None:
        if self.transform is None:
            self._first += data
            if len(self._first) < FIRST_BYTES:
                return
            transform = self._start_transform()
            data, self._first = self._first, b""
        else:
            transform = self.transform
        self._send_pieces(self._call_filter(lambda: transform.feed(data)))

    def _end_filtered(self) -> None:
        transform = self.transform
        if transform is None:  # ended before its first bytes were complete
            transform = self._start_transform()
            first, self._first = self._first, b""
            if first:
                self._send_pieces(self._call_filter(lambda: transform.feed(first)))
        self._send_filtered(self._call_filter(transform.finish))
        self._end_secure()

    def _start_transform(self) -> Transform:
        first = self._first[:FIRST_BYTES]
        self.stats.kind = channel_kind(first)
        factory = self.make_transform or identity_factory
        self.transform = self._call_filter(lambda: factory(first, self.index))
        return self.transform

    def _call_filter(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except Exception as exc:
            raise _Failure(f"the stream filter aborted the migration: "
                           f"{type(exc).__name__}: {exc}") from None

    def _send_pieces(self, out: bytes | Iterable[bytes]) -> None:
        """Send what ``feed`` returned: bytes, or pieces sent one by one as the filter
        produces them (it may wait on a barrier between two pieces)."""
        if isinstance(out, bytes | bytearray | memoryview):
            self._send_filtered(bytes(out))
            return
        pieces = iter(out)
        while (piece := self._call_filter(lambda: next(pieces, None))) is not None:
            self._send_filtered(piece)

    def _send_filtered(self, out: bytes) -> None:
        if out:
            self.stats.bytes_out += len(out)
            self._write_secure(out)

    # -- pumping --------------------------------------------------------------------------

    def _pump(self, name: str, read: Callable[[], bytes | None],
              write: Callable[[bytes], None], end: Callable[[], None]) -> None:
        session = self.session
        forward = name == "up"
        untrimmed = 0
        try:
            while True:
                data = read()
                if data is None:
                    if session.stopping:
                        return
                    continue
                if not data:
                    end()
                    with self._lock:
                        self._eofs += 1
                    return
                session.touch()
                if forward:
                    self.stats.bytes_in += len(data)
                    if self.make_transform is None:
                        self.stats.bytes_out += len(data)
                    untrimmed += len(data)
                else:
                    self.stats.return_bytes += len(data)
                write(data)
                if untrimmed >= TRIM_EVERY:
                    release_free_memory()
                    untrimmed = 0
        except _Failure as exc:
            if not session.stopping:
                session.abort(f"channel {self.index}: {exc}")
        except Exception as exc:  # a bug must still end the migration cleanly
            log.exception("relay channel %d crashed", self.index)
            session.abort(f"channel {self.index}: internal error: {exc}")
        finally:
            self._pump_done()
            if forward:
                release_free_memory()  # an idle daemon keeps nothing of the migration's heap

    def _pump_done(self) -> None:
        with self._lock:
            self._pending -= 1
            last = self._pending == 0
        if not last:
            return
        self.stats.clean = self._eofs == 2
        self.stats.frames_sent = self.secure.frames_sent
        self.stats.frames_received = self.secure.frames_received
        self.stats.ended = time.monotonic()
        self.secure.close(graceful=False)
        self.plain.close()
        self.session._channel_ended()

    def abort(self) -> None:
        """Wake both pumps (sockets shut down) and release a filter blocked on a barrier."""
        self.secure.abort()
        with contextlib.suppress(OSError):
            self.plain.shutdown(socket.SHUT_RDWR)
        release = getattr(self.transform, "abort", None)
        if callable(release):
            with contextlib.suppress(Exception):
                release()


class RelaySession:
    """The channels of one migration on one side, torn down together."""

    def __init__(self, session_id: str, connections: int, config: RelayConfig | None = None,
                 on_end: Callable[[RelaySession], None] | None = None) -> None:
        self.session_id = session_id
        self.connections = connections
        self.config = config or RelayConfig()
        self.on_end = on_end
        self.channels: list[_Channel] = []
        self.error: str | None = None
        self._lock = threading.Lock()
        self._ended = 0
        self._stopping = threading.Event()
        self._finished = threading.Event()
        self._last = time.monotonic()
        self._setup_deadline = self._last + self.config.setup_timeout_s
        self._watcher = threading.Thread(target=self._watch, daemon=True,
                                         name=f"relay/{session_id[:8]}/watch")

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def touch(self) -> None:
        self._last = time.monotonic()

    def abort(self, reason: str) -> None:
        """End the migration's relay with ``reason`` (the first reason wins)."""
        with self._lock:
            if self.error is None and not self._stopping.is_set():
                self.error = reason
                log.warning("migration relay %s aborted: %s", self.session_id[:8], reason)
        self._stop()

    def close(self, timeout: float = 5.0) -> None:
        """Stop (no error if none yet), wait up to ``timeout`` for the threads to end."""
        self._stop()
        deadline = time.monotonic() + timeout
        for ch in list(self.channels):
            for thread in ch.threads:
                if thread.is_alive():  # started and running
                    thread.join(max(0.0, deadline - time.monotonic()))

    def wait(self, timeout: float) -> bool:
        """True once every channel ended cleanly (False: timed out, or aborted)."""
        self._finished.wait(timeout)
        return self.completed

    @property
    def completed(self) -> bool:
        return (self.error is None and len(self.channels) == self.connections
                and self._ended == self.connections
                and all(ch.stats.clean for ch in self.channels))

    def stats(self) -> dict[str, Any]:
        channels = [ch.stats.as_dict() for ch in list(self.channels)]
        return {
            "session": self.session_id,
            "error": self.error,
            "channels": channels,
            "bytes_in": sum(c["bytes_in"] for c in channels),
            "bytes_out": sum(c["bytes_out"] for c in channels),
            "return_bytes": sum(c["return_bytes"] for c in channels),
        }

    def _stop(self) -> None:
        self._stopping.set()
        self._finished.set()
        self._close_listener()
        for ch in list(self.channels):
            ch.abort()

    def _close_listener(self) -> None:
        """Overridden by the source side."""

    def _add(self, channel: _Channel) -> None:
        with self._lock:
            self.channels.append(channel)
        self.touch()
        channel.start()

    def _channel_ended(self) -> None:
        with self._lock:
            self._ended += 1
            done = self._ended == self.connections
        if done:
            self._finished.set()

    def _watch(self) -> None:
        cfg = self.config
        while not self._finished.wait(TICK_S):
            now = time.monotonic()
            if len(self.channels) < self.connections and now > self._setup_deadline:
                self.abort(f"only {len(self.channels)} of {self.connections} data channels "
                           f"connected within {cfg.setup_timeout_s:g} s")
            elif now - self._last > cfg.idle_timeout_s:
                self.abort(f"no data moved for {cfg.idle_timeout_s:g} s")
        if self.on_end is not None:
            self.on_end(self)

    def start_watch(self) -> None:
        self._watcher.start()


class SourceRelay(RelaySession):
    """The source-side proxy of one migration (see the module docstring)."""

    def __init__(self, listen: tuple[str, int], dest: tuple[str, int], key: bytes,
                 session_id: str, *, channels: int = 0,
                 make_transform: TransformFactory = identity_factory,
                 config: RelayConfig | None = None,
                 on_end: Callable[[RelaySession], None] | None = None) -> None:
        super().__init__(session_id, channels + 1, config, on_end)
        self.listen = listen
        self.dest = dest
        self._key = key
        self.make_transform = make_transform
        self._listener: socket.socket | None = None
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True,
                                          name=f"relay/{session_id[:8]}/accept")

    def start(self) -> None:
        """Bind the listening port (OSError if it is taken) and start accepting."""
        family = socket.AF_INET6 if ":" in self.listen[0] else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tune(listener, self.config.sockbuf)  # inherited by accepted sockets
            listener.bind(self.listen)
            listener.listen(self.connections)
            listener.settimeout(TICK_S)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self._setup_deadline = time.monotonic() + self.config.setup_timeout_s
        self._acceptor.start()
        self.start_watch()

    @property
    def port(self) -> int:
        return self.listen[1]

    def _close_listener(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)

    def close(self, timeout: float = 5.0) -> None:
        super().close(timeout)
        self._acceptor.join(max(0.0, timeout))

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        try:
            while len(self.channels) < self.connections and not self.stopping:
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError as exc:
                    if not self.stopping:
                        self.abort(f"the local proxy port failed: {exc}")
                    return
                index = len(self.channels)
                try:
                    tune(conn, self.config.sockbuf)
                    secure = self._open_upstream(index)
                except (ChannelError, HandshakeError, ProtocolError, OSError) as exc:
                    self.abort(f"channel {index}: cannot open the data channel to the "
                               f"destination daemon: {exc}")
                    conn.close()
                    return
                if self.stopping:
                    conn.close()
                    secure.close()
                    return
                self._add(_Channel(self, index, conn, secure, self.make_transform))
        finally:
            listener.close()

    def _open_upstream(self, index: int) -> SecureChannel:
        cfg = self.config
        secure = connect_secure(self.dest, self._key, cfg.connect_timeout_s, cfg.sockbuf)
        try:
            secure.send(encode({"op": "data", "session": self.session_id, "channel": index}))
            answer = decode_response(secure.recv(timeout=2 * cfg.connect_timeout_s + 1))
            if not answer["ok"]:
                raise ChannelError(f"it refused: {answer['error']}")
        except BaseException:
            secure.close()
            raise
        return secure


class IncomingRelay(RelaySession):
    """The destination side of one migration: data channels in, local QEMU out."""

    def __init__(self, session_id: str, target: tuple[str, int], *, channels: int = 0,
                 config: RelayConfig | None = None,
                 on_end: Callable[[RelaySession], None] | None = None) -> None:
        super().__init__(session_id, channels + 1, config, on_end)
        self.target = target
        self._attach_lock = threading.Lock()

    def start(self) -> None:
        self._setup_deadline = time.monotonic() + self.config.setup_timeout_s
        self.start_watch()

    def attach(self, index: int, secure: SecureChannel) -> None:
        """Take data channel ``index`` (already authenticated): connect it to QEMU and answer.
        The channel is owned by this session afterwards (closed on any refusal)."""
        with self._attach_lock:
            expected = len(self.channels)
            if self.stopping:
                self._refuse(secure, "this migration is over")
                return
            if index != expected:
                self._refuse(secure, f"channel {index} out of order (expected {expected})")
                self.abort(f"data channel {index} arrived out of order (expected {expected})")
                return
            try:
                plain = self._connect_qemu()
            except OSError as exc:
                reason = (f"cannot reach the destination QEMU at {self.target[0]}:"
                          f"{self.target[1]}: {exc.strerror or exc}")
                self._refuse(secure, reason)
                self.abort(f"channel {index}: {reason}")
                return
            try:
                secure.send(encode(ok()), timeout=self.config.connect_timeout_s)
            except ChannelError as exc:
                plain.close()
                secure.close()
                self.abort(f"channel {index}: the source daemon went away: {exc}")
                return
            self._add(_Channel(self, index, plain, secure, None))

    def _refuse(self, secure: SecureChannel, reason: str) -> None:
        with contextlib.suppress(ChannelError, ProtocolError):
            secure.send(encode(error(reason)), timeout=1.0)
        secure.close()

    def _connect_qemu(self) -> socket.socket:
        """Connect to the destination QEMU, retrying briefly while it is not listening yet."""
        deadline = time.monotonic() + self.config.connect_timeout_s
        while True:
            remaining = deadline - time.monotonic()
            try:
                sock = socket.create_connection(self.target, timeout=max(0.1, remaining))
            except ConnectionRefusedError:
                if remaining <= 0.1 or self.stopping:
                    raise
                time.sleep(0.05)
                continue
            tune(sock, self.config.sockbuf)
            return sock
