"""The benchmark's bare relay carries both directions byte for byte and passes EOF on."""

import hashlib
import os
import socket
import threading

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


def test_bare_relay_carries_both_directions_and_eof():
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

    listen = ("127.0.0.1", _free_port())
    threading.Thread(target=answer, daemon=True).start()
    threading.Thread(target=serve, args=(listen, target.getsockname()), daemon=True).start()
    for _ in range(100):
        try:
            client = socket.create_connection(listen, timeout=10)
            break
        except ConnectionRefusedError:
            threading.Event().wait(0.05)
    else:
        raise AssertionError("the relay never listened")
    with client:
        client.sendall(payload)
        client.shutdown(socket.SHUT_WR)
        reply = _recv_all(client)
    assert got["data"] == payload
    assert reply == hashlib.sha256(payload).digest()
    target.close()
