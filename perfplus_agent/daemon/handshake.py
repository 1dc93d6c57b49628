"""Mutual authentication of two daemons over a fresh TCP connection, and session keys.

Wire format (protocol version 1)::

    client -> server   hello:  b"PPD" | version | nonce_c (32)
    server -> client   hello:  b"PPD" | version | nonce_s (32)
    client -> server   proof:  HMAC-SHA256(auth_key, b"client")
    server -> client   proof:  HMAC-SHA256(auth_key, b"server")

Everything is derived with HKDF-SHA256 from the cluster key, salted with both nonces:
``auth_key`` for the proofs and one key per direction for the secure channel. The client
proves first, so a peer without the key learns nothing but a random nonce; the server closes
without a word on any failure (the caller logs the reason). Every read and write happens
before one deadline.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import socket
import time
from dataclasses import dataclass

from perfplus_agent.errors import PerfplusError

__all__ = [
    "HANDSHAKE_TIMEOUT_S",
    "PROTOCOL_VERSION",
    "HandshakeError",
    "SessionKeys",
    "client_handshake",
    "hkdf_sha256",
    "recv_exact",
    "server_handshake",
]

PROTOCOL_VERSION = 1
HANDSHAKE_TIMEOUT_S = 5.0
MAGIC = b"PPD"
NONCE_SIZE = 32
PROOF_SIZE = 32
HELLO_SIZE = len(MAGIC) + 1 + NONCE_SIZE


class HandshakeError(PerfplusError):
    """The peer failed to authenticate, spoke another protocol, stalled or went away."""


@dataclass(frozen=True)
class SessionKeys:
    """Directional keys as seen by one side: ``send`` encrypts what it sends."""

    send: bytes
    recv: bytes


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """RFC 5869 HKDF with SHA-256 (extract, then expand)."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def recv_exact(sock: socket.socket, n: int, deadline: float) -> bytes:
    """Exactly ``n`` bytes before ``deadline`` (monotonic); HandshakeError otherwise."""
    buf = bytearray()
    while len(buf) < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise HandshakeError("peer stalled during the handshake")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(n - len(buf))
        except TimeoutError:
            raise HandshakeError("peer stalled during the handshake") from None
        except OSError as exc:
            raise HandshakeError(f"connection failed during the handshake: {exc}") from None
        if not chunk:
            raise HandshakeError("peer closed the connection during the handshake")
        buf += chunk
    return bytes(buf)


def _send(sock: socket.socket, data: bytes, deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise HandshakeError("handshake timed out")
    sock.settimeout(remaining)
    try:
        sock.sendall(data)
    except TimeoutError:
        raise HandshakeError("peer stalled during the handshake") from None
    except OSError as exc:
        raise HandshakeError(f"connection failed during the handshake: {exc}") from None


def _parse_hello(hello: bytes) -> bytes:
    if hello[: len(MAGIC)] != MAGIC:
        raise HandshakeError("peer does not speak the perfplus daemon protocol")
    version = hello[len(MAGIC)]
    if version != PROTOCOL_VERSION:
        raise HandshakeError(f"peer speaks protocol version {version}, "
                             f"this daemon {PROTOCOL_VERSION}")
    return hello[len(MAGIC) + 1:]


def _derive(key: bytes, nonce_c: bytes, nonce_s: bytes) -> tuple[bytes, bytes, bytes]:
    """(auth_key, client->server key, server->client key)."""
    salt = nonce_c + nonce_s
    okm = hkdf_sha256(key, salt, b"perfplus-daemon v1 keys", 96)
    return okm[:32], okm[32:64], okm[64:]


def _proof(auth_key: bytes, role: bytes) -> bytes:
    return hmac.new(auth_key, b"perfplus-daemon v1 proof " + role, hashlib.sha256).digest()


def _hello(nonce: bytes) -> bytes:
    return MAGIC + bytes([PROTOCOL_VERSION]) + nonce


def client_handshake(sock: socket.socket, key: bytes,
                     timeout: float = HANDSHAKE_TIMEOUT_S) -> SessionKeys:
    """Authenticate to the server on ``sock``; the client's session keys."""
    deadline = time.monotonic() + timeout
    nonce_c = secrets.token_bytes(NONCE_SIZE)
    _send(sock, _hello(nonce_c), deadline)
    nonce_s = _parse_hello(recv_exact(sock, HELLO_SIZE, deadline))
    auth, c2s, s2c = _derive(key, nonce_c, nonce_s)
    _send(sock, _proof(auth, b"client"), deadline)
    try:
        theirs = recv_exact(sock, PROOF_SIZE, deadline)
    except HandshakeError as exc:
        raise HandshakeError(f"the peer refused us ({exc}): is the cluster key the same on "
                             "both nodes?") from None
    if not hmac.compare_digest(theirs, _proof(auth, b"server")):
        raise HandshakeError("the peer does not know the cluster key")
    return SessionKeys(send=c2s, recv=s2c)


def server_handshake(sock: socket.socket, key: bytes,
                     timeout: float = HANDSHAKE_TIMEOUT_S) -> SessionKeys:
    """Authenticate the client on ``sock``; the server's session keys. On HandshakeError the
    caller closes the socket and sends nothing."""
    deadline = time.monotonic() + timeout
    nonce_c = _parse_hello(recv_exact(sock, HELLO_SIZE, deadline))
    nonce_s = secrets.token_bytes(NONCE_SIZE)
    _send(sock, _hello(nonce_s), deadline)
    auth, c2s, s2c = _derive(key, nonce_c, nonce_s)
    theirs = recv_exact(sock, PROOF_SIZE, deadline)
    if not hmac.compare_digest(theirs, _proof(auth, b"client")):
        raise HandshakeError("the client does not know the cluster key")
    _send(sock, _proof(auth, b"server"), deadline)
    return SessionKeys(send=s2c, recv=c2s)
