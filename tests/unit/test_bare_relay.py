"""The benchmark's bare relay carries both directions byte for byte and passes EOF on, from a
TCP or a UNIX-socket listener."""

import hashlib
import os
import socket
import threading

import pytest

from perfplus_agent.bench.bare_relay import serve


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _recv_all(sock: socket.socket) -> bytes:
    parts = []
    while chunk := sock.recv(1 << 16):
        parts.append(chunk)
    return b"".join(parts)


def _connect(listen: str) -> socket.socket:
    """Connect to the relay once it listens (bounded)."""
    for _ in range(100):
        try:
            if listen.startswith("/"):
                sock = socket.socket(socket.AF_UNIX)
                sock.settimeout(10)
                sock.connect(listen)
                return sock
            host, port = listen.rsplit(":", 1)
            return socket.create_connection((host, int(port)), timeout=10)
        except (ConnectionRefusedError, FileNotFoundError):
            threading.Event().wait(0.05)
    raise AssertionError("the relay never listened")


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_bare_relay_carries_both_directions_and_eof(kind, tmp_path):
    payload = os.urandom(3 << 20)
    target = socket.create_server(("127.0.0.1", 0))
    target.settimeout(10)
    got: dict[str, bytes] = {}

    def answer() -> None:  # the "destination": reads to EOF, answers with a digest
        conn, _ = target.accept()
        conn.settimeout(10)
        with conn:
            got["data"] = _recv_all(conn)
            conn.sendall(hashlib.sha256(got["data"]).digest())

    listen = (str(tmp_path / "sub" / "relay.sock") if kind == "unix"
              else f"127.0.0.1:{_free_port()}")
    host, port = target.getsockname()
    threading.Thread(target=answer, daemon=True).start()
    threading.Thread(target=serve, args=(listen, f"{host}:{port}"), daemon=True).start()
    with _connect(listen) as client:
        client.sendall(payload)
        client.shutdown(socket.SHUT_WR)
        reply = _recv_all(client)
    assert got["data"] == payload
    assert reply == hashlib.sha256(payload).digest()
    target.close()
