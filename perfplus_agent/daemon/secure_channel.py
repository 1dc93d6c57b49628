"""An encrypted, authenticated, framed byte stream on a connected socket.

Frame: be32 length | AES-256-GCM(ciphertext | 16-byte tag), sealed in one buffer and received
in place. Each direction has its own key (from the handshake) and its own 64-bit frame counter
as the nonce, so a frame that is replayed, reordered, dropped or altered fails authentication.
An empty frame marks a clean end of stream; a TCP close without it is an error (truncation).
Every socket operation has a timeout; a partially received frame is kept across timeouts, so
``recv`` can be retried.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time

from perfplus_agent.daemon.handshake import (
    HANDSHAKE_TIMEOUT_S,
    SessionKeys,
    client_handshake,
    server_handshake,
)
from perfplus_agent.daemon.sockets import TICK_S, recv_some_into, send_all, tune
from perfplus_agent.errors import PerfplusError
from perfplus_agent.perfplus_c import _seal

__all__ = [
    "MAX_FRAME",
    "ChannelError",
    "ChannelTimeout",
    "SecureChannel",
    "accept_secure",
    "connect_secure",
]

MAX_FRAME = 256 * 1024  # plaintext bytes per frame
TAG = 16
HEADER = struct.Struct(">I")
NONCE_PREFIX = b"PPD\x00"
DEFAULT_TIMEOUT_S = 30.0


class ChannelError(PerfplusError):
    """The stream is broken: authentication failure, truncation, oversize frame, I/O error."""


class ChannelTimeout(ChannelError):
    """Nothing (or not a whole frame) arrived in time; the channel is still usable."""


class SecureChannel:
    """Framed AES-GCM stream; ``send`` and ``recv`` may run in two different threads."""

    def __init__(self, sock: socket.socket, keys: SessionKeys,
                 timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.sock = sock
        self.timeout = timeout
        self._keys = keys
        self._send_counter = 0
        self._recv_counter = 0
        # One frame's bytes as they arrive (received in place: no copy per chunk); a
        # partial frame stays here across timeouts.
        self._rbuf = bytearray(HEADER.size + MAX_FRAME + TAG)
        self._rview = memoryview(self._rbuf)
        self._rlen = 0
        self._send_lock = threading.Lock()
        self._recv_lock = threading.Lock()
        self._eof_sent = False
        self._eof_seen = False
        self._broken = False
        self._closed = False
        self.frames_sent = 0
        self.frames_received = 0
        sock.settimeout(TICK_S)

    @staticmethod
    def _nonce(counter: int) -> bytes:
        return NONCE_PREFIX + counter.to_bytes(8, "big")

    # -- sending --------------------------------------------------------------------------

    def send(self, data: bytes | memoryview, timeout: float | None = None) -> None:
        """Send ``data`` as one or more frames (empty data sends nothing)."""
        view = memoryview(data)
        for start in range(0, len(view), MAX_FRAME):
            self._send_frame(view[start:start + MAX_FRAME], timeout)

    def send_eof(self, timeout: float | None = None) -> None:
        """Mark the clean end of this direction (once); the peer's ``recv`` returns b""."""
        if not self._eof_sent:
            self._send_frame(b"", timeout)
            self._eof_sent = True

    def _send_frame(self, plain: bytes | memoryview, timeout: float | None) -> None:
        with self._send_lock:
            if self._eof_sent:
                raise ChannelError("send after end of stream")
            if self._broken or self._closed:
                raise ChannelError("the channel is closed")
            frame = _seal.seal(self._keys.send, self._nonce(self._send_counter), plain,
                               length_prefix=True)
            self._send_counter += 1
            deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
            try:
                send_all(self.sock, frame, deadline)
            except TimeoutError:
                self._broken = True  # a frame may be half sent: the stream is unusable
                raise ChannelError("the peer stopped reading (send timed out)") from None
            except OSError as exc:
                self._broken = True
                raise ChannelError(f"send failed: {exc.strerror or exc}") from None
            self.frames_sent += 1

    # -- receiving ------------------------------------------------------------------------

    def recv(self, timeout: float | None = None) -> bytes:
        """The next frame's plaintext, or b"" once the peer ended the stream cleanly.
        ChannelTimeout if no whole frame arrived within ``timeout`` (retry is safe)."""
        with self._recv_lock:
            if self._eof_seen:
                return b""
            if self._broken or self._closed:
                raise ChannelError("the channel is closed")
            deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
            self._fill(HEADER.size, deadline)
            (length,) = HEADER.unpack_from(self._rbuf)
            if not TAG <= length <= MAX_FRAME + TAG:
                self._broken = True
                raise ChannelError(f"bad frame length {length}")
            self._fill(HEADER.size + length, deadline)
            self._rlen = 0
            try:
                plain = _seal.open(self._keys.recv, self._nonce(self._recv_counter),
                                   self._rview[HEADER.size:HEADER.size + length])
            except ValueError:
                self._broken = True
                raise ChannelError("frame authentication failed") from None
            self._recv_counter += 1
            self.frames_received += 1
            if not plain:
                self._eof_seen = True
            return plain

    def _fill(self, size: int, deadline: float) -> None:
        """Receive until the current frame's first ``size`` bytes are in the buffer."""
        while self._rlen < size:
            if self._closed:
                raise ChannelError("the channel is closed")
            try:
                got = recv_some_into(self.sock, self._rview[self._rlen:size])
            except OSError as exc:
                self._broken = True
                raise ChannelError(f"receive failed: {exc.strerror or exc}") from None
            if got is None:
                if time.monotonic() >= deadline:
                    raise ChannelTimeout("no frame in time")
                continue
            if not got:
                self._broken = True
                raise ChannelError("the peer closed the connection mid-stream")
            self._rlen += got

    # -- closing --------------------------------------------------------------------------

    def close(self, graceful: bool = False, timeout: float = 1.0) -> None:
        """Close the socket (idempotent); with ``graceful``, first end the stream cleanly."""
        if self._closed:
            return
        if graceful and not self._broken:
            with contextlib.suppress(ChannelError):
                self.send_eof(timeout)
        self.abort()
        self.sock.close()

    def abort(self) -> None:
        """Wake every thread blocked on this channel and make further use fail (no close:
        the socket's owner closes it once those threads are gone)."""
        self._closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    @property
    def closed(self) -> bool:
        return self._closed


def connect_secure(address: tuple[str, int], key: bytes, timeout: float = DEFAULT_TIMEOUT_S,
                   bufsize: int | None = None) -> SecureChannel:
    """Connect to a daemon, authenticate, and return the channel (ChannelError/HandshakeError
    on failure; nothing is left open)."""
    try:
        sock = socket.create_connection(address, timeout=min(timeout, HANDSHAKE_TIMEOUT_S))
    except OSError as exc:
        host, port = address
        raise ChannelError(f"cannot connect to the daemon at {host}:{port}: "
                           f"{exc.strerror or exc}") from None
    try:
        tune(sock, bufsize)
        keys = client_handshake(sock, key, min(timeout, HANDSHAKE_TIMEOUT_S))
    except BaseException:
        sock.close()
        raise
    return SecureChannel(sock, keys, timeout)


def accept_secure(sock: socket.socket, key: bytes, timeout: float = DEFAULT_TIMEOUT_S,
                  handshake_timeout: float = HANDSHAKE_TIMEOUT_S) -> SecureChannel:
    """Authenticate an accepted connection (HandshakeError: the caller closes it silently)."""
    keys = server_handshake(sock, key, handshake_timeout)
    return SecureChannel(sock, keys, timeout)
