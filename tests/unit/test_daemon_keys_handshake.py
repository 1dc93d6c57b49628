"""Daemon: the cluster key file and the mutual-authentication handshake."""

import os
import socket
import threading
import time

import pytest

from perfplus_agent.daemon.handshake import (
    HandshakeError,
    client_handshake,
    hkdf_sha256,
    server_handshake,
)
from perfplus_agent.daemon.keys import KeyFileError, generate_key_file, load_key

pytestmark = pytest.mark.timeout(30)
KEY = bytes(range(32))


def test_keygen_writes_a_private_hex_key(tmp_path):
    path = generate_key_file(tmp_path / "etc" / "cluster.key")
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert len(path.read_text().strip()) == 64
    assert len(load_key(path)) == 32
    with pytest.raises(KeyFileError, match="already exists"):
        generate_key_file(path)
    assert load_key(generate_key_file(path, overwrite=True)) != b""


@pytest.mark.parametrize(("content", "mode", "match"), [
    ("00" * 16, 0o600, "is 16 bytes; it must be 32"),
    ("not hex at all", 0o600, "does not hold a hex key"),
    ("00" * 32, 0o644, "accessible to others"),
    ("00" * 32, 0o640, "accessible to others"),
])
def test_bad_key_files_are_named(tmp_path, content, mode, match):
    path = tmp_path / "k"
    path.write_text(content)
    path.chmod(mode)
    with pytest.raises(KeyFileError, match=match):
        load_key(path)


def test_missing_key_file_says_how_to_make_one(tmp_path):
    with pytest.raises(KeyFileError, match="perfplus daemon keygen"):
        load_key(tmp_path / "none")


def test_hkdf_rfc5869_case_1():
    okm = hkdf_sha256(bytes([0x0B] * 22), bytes(range(13)), bytes(range(0xF0, 0xFA)), 42)
    assert okm.hex() == ("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                         "34007208d5b887185865")


def run_server(sock, key, timeout=2.0):
    box = {}

    def target():
        try:
            box["keys"] = server_handshake(sock, key, timeout)
        except HandshakeError as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def test_handshake_agrees_on_directional_keys():
    a, b = socket.socketpair()
    with a, b:
        thread, box = run_server(b, KEY)
        client = client_handshake(a, KEY, 2.0)
        thread.join(5)
        server = box["keys"]
    assert client.send == server.recv
    assert client.recv == server.send
    assert client.send != client.recv


def test_handshake_keys_are_fresh_per_connection():
    keys = []
    for _ in range(2):
        a, b = socket.socketpair()
        with a, b:
            thread, _box = run_server(b, KEY)
            keys.append(client_handshake(a, KEY, 2.0))
            thread.join(5)
    assert keys[0] != keys[1]


def test_wrong_key_fails_on_both_sides_and_server_sends_no_proof():
    a, b = socket.socketpair()
    with a, b:
        thread, box = run_server(b, KEY)
        with pytest.raises(HandshakeError, match="cluster key"):
            client_handshake(a, bytes(32), 2.0)
        thread.join(5)
    assert "does not know the cluster key" in str(box["error"])


def test_garbage_hello_is_refused():
    a, b = socket.socketpair()
    with a, b:
        thread, box = run_server(b, KEY)
        a.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"x" * 40)
        thread.join(5)
    assert "does not speak" in str(box["error"])


def test_other_protocol_version_is_refused():
    a, b = socket.socketpair()
    with a, b:
        thread, box = run_server(b, KEY)
        a.sendall(b"PPD\x09" + bytes(32))
        thread.join(5)
    assert "version 9" in str(box["error"])


def test_stalled_peer_times_out():
    a, b = socket.socketpair()
    with a, b:
        t0 = time.monotonic()
        thread, box = run_server(b, KEY, timeout=0.3)
        a.sendall(b"PPD")  # then nothing
        thread.join(5)
        assert time.monotonic() - t0 < 2
    assert "stalled" in str(box["error"])


def test_client_times_out_on_a_silent_server():
    a, b = socket.socketpair()
    with a, b:
        t0 = time.monotonic()
        with pytest.raises(HandshakeError):
            client_handshake(a, KEY, 0.3)
        assert time.monotonic() - t0 < 2
