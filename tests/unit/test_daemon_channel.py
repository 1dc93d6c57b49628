"""Daemon: AES-GCM sealing and the framed secure channel."""

import socket
import struct
import threading
import time

import pytest

from perfplus_agent.daemon.handshake import SessionKeys
from perfplus_agent.daemon.secure_channel import (
    MAX_FRAME,
    ChannelError,
    ChannelTimeout,
    SecureChannel,
)
from perfplus_agent.perfplus_c import _seal

pytestmark = pytest.mark.timeout(30)
K1, K2 = bytes([1]) * 32, bytes([2]) * 32


def pair():
    a, b = socket.socketpair()
    return SecureChannel(a, SessionKeys(K1, K2), 2.0), SecureChannel(b, SessionKeys(K2, K1), 2.0)


def raw_frames(*payloads):
    """The exact bytes a sender would put on the wire for these payloads."""
    a, b = socket.socketpair()
    sender = SecureChannel(a, SessionKeys(K1, K2), 2.0)
    for p in payloads:
        sender.send(p)
    b.settimeout(2)
    frames = []
    for _ in payloads:
        (n,) = struct.unpack(">I", b.recv(4, socket.MSG_WAITALL))
        frames.append(struct.pack(">I", n) + b.recv(n, socket.MSG_WAITALL))
    sender.close()
    b.close()
    return frames


def receiver_fed(data):
    a, b = socket.socketpair()
    a.sendall(data)
    a.shutdown(socket.SHUT_WR)
    return a, SecureChannel(b, SessionKeys(K2, K1), 2.0)


def test_seal_round_trip_and_tamper():
    nonce = bytes(12)
    sealed = _seal.seal(K1, nonce, b"page")
    assert len(sealed) == 4 + 16
    assert _seal.open(K1, nonce, sealed) == b"page"
    for bad in (sealed[:-1] + bytes([sealed[-1] ^ 1]), bytes([sealed[0] ^ 1]) + sealed[1:]):
        with pytest.raises(ValueError, match="authentication"):
            _seal.open(K1, nonce, bad)
    with pytest.raises(ValueError, match="authentication"):
        _seal.open(K2, nonce, sealed)
    with pytest.raises(ValueError, match="authentication"):
        _seal.open(K1, b"\x01" + bytes(11), sealed)
    with pytest.raises(ValueError, match="32 bytes"):
        _seal.seal(b"short", nonce, b"")


def test_seal_with_length_prefix_is_one_frame():
    nonce = bytes(range(12))
    data = memoryview(bytes(range(256)) * 1000)[100:70_000]  # any buffer, no copy needed
    frame = _seal.seal(K1, nonce, data, length_prefix=True)
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4 == len(data) + 16
    assert frame[4:] == _seal.seal(K1, nonce, data)
    assert _seal.open(K1, nonce, memoryview(frame)[4:]) == bytes(data)
    assert _seal.seal(K1, nonce, b"", length_prefix=True) == (16).to_bytes(4, "big") + \
        _seal.seal(K1, nonce, b"")


def test_round_trip_splits_large_data_and_ends_cleanly():
    left, right = pair()
    big = bytes(range(256)) * (3 * MAX_FRAME // 256 + 7)
    thread = threading.Thread(target=lambda: (left.send(b"hello"), left.send(b""),
                                              left.send(big), left.send_eof()))
    thread.start()
    assert right.recv() == b"hello"
    got = b""
    while len(got) < len(big):
        frame = right.recv()
        assert 0 < len(frame) <= MAX_FRAME
        got += frame
    assert got == big
    assert right.recv() == b""
    assert right.recv() == b""  # stays at end of stream
    thread.join(5)
    right.send(b"back")  # the other direction still works
    assert left.recv() == b"back"
    with pytest.raises(ChannelError, match="after end of stream"):
        left.send(b"more")
    left.close()
    right.close()


def test_tampered_frame_fails():
    frame = bytearray(raw_frames(b"secret data")[0])
    frame[10] ^= 0x40
    a, rx = receiver_fed(bytes(frame))
    with pytest.raises(ChannelError, match="authentication"):
        rx.recv()
    a.close()
    rx.close()


def test_replayed_and_reordered_frames_fail():
    f0, f1 = raw_frames(b"first", b"second")
    a, rx = receiver_fed(f0 + f0)
    assert rx.recv() == b"first"
    with pytest.raises(ChannelError, match="authentication"):
        rx.recv()
    a.close()
    rx.close()
    a, rx = receiver_fed(f1 + f0)
    with pytest.raises(ChannelError, match="authentication"):
        rx.recv()
    a.close()
    rx.close()


def test_oversize_frame_is_refused_before_reading_it():
    a, rx = receiver_fed(struct.pack(">I", MAX_FRAME + 17))
    with pytest.raises(ChannelError, match="bad frame length"):
        rx.recv()
    a.close()
    rx.close()


def test_truncated_stream_is_an_error_not_an_end():
    (frame,) = raw_frames(b"partial")
    a, rx = receiver_fed(frame[:-3])
    with pytest.raises(ChannelError, match="mid-stream"):
        rx.recv()
    a.close()
    rx.close()
    a, rx = receiver_fed(b"")
    with pytest.raises(ChannelError, match="mid-stream"):
        rx.recv()
    a.close()
    rx.close()


def test_timeout_keeps_a_partial_frame_for_the_retry():
    (frame,) = raw_frames(b"slowly")
    a, b = socket.socketpair()
    rx = SecureChannel(b, SessionKeys(K2, K1), 2.0)
    a.sendall(frame[:6])
    t0 = time.monotonic()
    with pytest.raises(ChannelTimeout):
        rx.recv(timeout=0.3)
    assert time.monotonic() - t0 < 1.5
    a.sendall(frame[6:])
    assert rx.recv(timeout=2) == b"slowly"
    a.close()
    rx.close()


def test_send_to_a_peer_that_stops_reading_times_out():
    a, b = socket.socketpair()
    tx = SecureChannel(a, SessionKeys(K1, K2), 0.5)
    t0 = time.monotonic()
    with pytest.raises(ChannelError, match="stopped reading"):
        for _ in range(1000):
            tx.send(bytes(MAX_FRAME))
    assert time.monotonic() - t0 < 3
    tx.close()
    b.close()
