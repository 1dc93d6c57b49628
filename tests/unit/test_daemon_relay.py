"""Daemon: the data plane on loopback, between a fake source QEMU and a fake destination QEMU.

The destination daemon's QEMU side is 127.0.0.2 so that both "nodes" can use the same port
on one machine (the source proxy listens on 127.0.0.1).
"""

import contextlib
import socket
import threading
import time

import pytest

from perfplus_agent.daemon.client import request
from perfplus_agent.daemon.handshake import server_handshake
from perfplus_agent.daemon.protocol import encode, ok, parse_request
from perfplus_agent.daemon.relay import RelayConfig, SourceRelay
from perfplus_agent.daemon.secure_channel import SecureChannel
from perfplus_agent.daemon.server import DaemonServer, ServerConfig
from perfplus_agent.daemon.transform import MAGIC_MAIN, MAGIC_MULTIFD

pytestmark = pytest.mark.timeout(60)
KEY = bytes(range(32))
FAST = RelayConfig(connect_timeout_s=2.0, send_timeout_s=3.0, idle_timeout_s=5.0,
                   setup_timeout_s=5.0)


def free_port():
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.2", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


class FakeDestQemu:
    """Accepts connections on 127.0.0.2:port, reads each to EOF, answers, closes."""

    def __init__(self, port, reply=b"ack", read=True):
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        self.listener.bind(("127.0.0.2", port))
        self.listener.listen(8)
        self.listener.settimeout(10)
        self.reply, self.read = reply, read
        self.received = []  # per accepted connection, in accept order
        self.closed = []
        self.conns = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.listener.accept()
                conn.settimeout(15)
                self.conns.append(conn)
                self.received.append(bytearray())
                self.closed.append(threading.Event())
                threading.Thread(target=self._serve, args=(len(self.conns) - 1,),
                                 daemon=True).start()

    def _serve(self, i):
        conn = self.conns[i]
        try:
            if self.read:
                while True:
                    data = conn.recv(65536)
                    if not data:
                        break
                    self.received[i] += data
                conn.sendall(self.reply + bytes([i]))
                conn.close()
            else:
                time.sleep(30)
        except OSError:
            pass
        finally:
            self.closed[i].set()

    def close(self):
        self.listener.close()
        for c in self.conns:
            c.close()


@pytest.fixture
def dest():
    server = DaemonServer(KEY, ServerConfig(listen=("127.0.0.1", 0), qemu_host="127.0.0.2",
                                            relay=FAST))
    server.start()
    yield server
    server.stop()


def prepare(dest, port, channels):
    answer = request(dest.address, KEY, {"op": "prepare-incoming", "port": port,
                                         "channels": channels}, 5)
    assert answer["ok"], answer
    return answer["session"]


def source_relay(dest_addr, session, port, channels, make_transform=None, config=FAST):
    kwargs = {"make_transform": make_transform} if make_transform else {}
    relay = SourceRelay(("127.0.0.1", port), dest_addr, KEY, session, channels=channels,
                        config=config, **kwargs)
    relay.start()
    return relay


def qemu_connect(port, first):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(first)
    return sock


def read_all(sock, limit=10):
    sock.settimeout(limit)
    data = b""
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def payload(i, n=700_000):
    return (MAGIC_MAIN if i == 0 else MAGIC_MULTIFD) + bytes([i]) * n


def test_channels_arrive_in_order_both_directions(dest):
    port = free_port()
    session = prepare(dest, port, 2)
    qemu = FakeDestQemu(port)
    relay = source_relay(dest.address, session, port, 2)
    socks = []
    for i in range(3):
        socks.append(qemu_connect(port, payload(i)[:10]))
        time.sleep(0.05)
    for i, s in enumerate(socks):
        s.sendall(payload(i)[10:])
        s.shutdown(socket.SHUT_WR)
    replies = [read_all(s) for s in socks]
    assert relay.wait(10)
    relay.close()
    qemu.close()
    assert [bytes(r) for r in qemu.received] == [payload(i) for i in range(3)]
    assert replies == [b"ack" + bytes([i]) for i in range(3)]
    stats = relay.stats()
    assert stats["error"] is None
    assert [c["kind"] for c in stats["channels"]] == ["main", "multifd", "multifd"]
    assert stats["bytes_in"] == stats["bytes_out"] == 3 * len(payload(0))
    assert stats["return_bytes"] == 12
    assert all(c["clean"] and c["frames_sent"] >= 3 for c in stats["channels"])


MADE = []


class DropX:
    """Drops every b"x" and appends a trailer at the end; records how it was made."""

    def __init__(self, first, index):
        MADE.append((first, index))

    def feed(self, chunk):
        return chunk.replace(b"x", b"")

    def finish(self):
        return b"<end>"


def test_transform_drops_bytes_and_sees_first_bytes(dest):
    port = free_port()
    session = prepare(dest, port, 1)
    qemu = FakeDestQemu(port)
    MADE.clear()
    relay = source_relay(dest.address, session, port, 1, DropX)
    s0 = qemu_connect(port, b"QE")  # first bytes split across reads
    time.sleep(0.1)
    s0.sendall(b"VMaxbx" * 1000)
    s1 = qemu_connect(port, MAGIC_MULTIFD + b"x" * 100_000 + b"y")
    for s in (s0, s1):
        s.shutdown(socket.SHUT_WR)
    for s in (s0, s1):
        read_all(s)
    assert relay.wait(10)
    relay.close()
    qemu.close()
    assert MADE == [(b"QEVM", 0), (MAGIC_MULTIFD, 1)]
    assert bytes(qemu.received[0]) == b"QE" + b"VMab" * 1000 + b"<end>"
    assert bytes(qemu.received[1]) == MAGIC_MULTIFD + b"y<end>"
    ch = relay.stats()["channels"]
    assert ch[1]["bytes_in"] == 100_005 and ch[1]["bytes_out"] == 10


class Explodes:
    def __init__(self, first, index):
        self.index = index
        self.fed = 0
        self.aborted = False

    def feed(self, chunk):
        self.fed += len(chunk)
        if self.index == 1 and self.fed > 50_000:
            raise RuntimeError("barrier broken")
        return chunk

    def finish(self):
        return b""

    def abort(self):
        self.aborted = True


def assert_closed_soon(sock, within=5.0):
    """The peer closed ``sock``: reading ends (EOF or reset) within ``within`` seconds."""
    sock.settimeout(within)
    t0 = time.monotonic()
    with contextlib.suppress(ConnectionResetError, BrokenPipeError):
        while sock.recv(65536):
            pass
    assert time.monotonic() - t0 < within


def test_transform_exception_tears_everything_down(dest):
    port = free_port()
    session = prepare(dest, port, 1)
    qemu = FakeDestQemu(port, read=True)
    relay = source_relay(dest.address, session, port, 1, Explodes)
    s0 = qemu_connect(port, payload(0, 1000))
    s1 = qemu_connect(port, MAGIC_MULTIFD)
    with contextlib.suppress(OSError):
        s1.sendall(bytes(200_000))
    t0 = time.monotonic()
    assert not relay.wait(10)
    assert "stream filter aborted the migration: RuntimeError: barrier broken" in relay.error
    for s in (s0, s1):
        assert_closed_soon(s)
    relay.close(timeout=5)
    assert time.monotonic() - t0 < 10
    assert all(not t.is_alive() for ch in relay.channels for t in ch.threads)
    assert all(ch.transform.aborted for ch in relay.channels)
    for ev in qemu.closed:  # the destination QEMU saw its connections end too
        assert ev.wait(10)
    qemu.close()


def test_factory_exception_aborts(dest):
    port = free_port()
    session = prepare(dest, port, 0)
    qemu = FakeDestQemu(port)

    def refuse(first, index):
        raise ValueError("postcopy-preempt channel: refusing to filter")

    relay = source_relay(dest.address, session, port, 0, refuse)
    s0 = qemu_connect(port, b"\x00\x00\x00\x01junk")
    assert_closed_soon(s0)
    assert "refusing to filter" in relay.error
    relay.close()
    qemu.close()


def fake_dest_daemon(die_after):
    """A daemon that authenticates, accepts the data channel, reads ``die_after`` bytes of
    frames, then drops the connection without a clean end."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(10)

    def run():
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            channel = SecureChannel(conn, server_handshake(conn, KEY, 5), 5)
            parse_request(channel.recv())
            channel.send(encode(ok()))
            got = 0
            while got < die_after:
                got += len(channel.recv())
            conn.close()  # dies: no end-of-stream frame
        listener.close()

    threading.Thread(target=run, daemon=True).start()
    return listener.getsockname()


def test_peer_dying_mid_stream_closes_qemu_side():
    port = free_port()
    relay = source_relay(fake_dest_daemon(300_000), "s" * 32, port, 0)
    s0 = qemu_connect(port, MAGIC_MAIN)
    sender = threading.Thread(target=_send_quietly, args=(s0, bytes(5_000_000)), daemon=True)
    sender.start()
    assert not relay.wait(15)
    assert "channel 0: the data link to the peer daemon failed" in relay.error
    assert_closed_soon(s0)
    relay.close()
    sender.join(10)
    assert not sender.is_alive()


def _send_quietly(sock, data):
    with contextlib.suppress(OSError):
        sock.sendall(data)


def test_destination_qemu_absent_fails_fast(dest):
    port = free_port()  # nobody listens on 127.0.0.2:port
    relay = source_relay(dest.address, prepare(dest, port, 0), port, 0)
    s0 = qemu_connect(port, MAGIC_MAIN)
    assert_closed_soon(s0, within=10)
    assert "cannot reach the destination QEMU" in relay.error
    relay.close()


def test_unknown_session_is_refused(dest):
    port = free_port()
    relay = source_relay(dest.address, "0" * 32, port, 0)
    s0 = qemu_connect(port, MAGIC_MAIN)
    assert_closed_soon(s0)
    assert "unknown migration session" in relay.error
    relay.close()


def test_idle_and_missing_channels_time_out(dest):
    cfg = RelayConfig(connect_timeout_s=2.0, send_timeout_s=3.0, idle_timeout_s=0.5,
                      setup_timeout_s=10.0)
    port = free_port()
    session = prepare(dest, port, 0)
    qemu = FakeDestQemu(port)
    relay = source_relay(dest.address, session, port, 0, config=cfg)
    s0 = qemu_connect(port, MAGIC_MAIN)  # then silence
    assert_closed_soon(s0)
    assert "no data moved for 0.5 s" in relay.error
    relay.close()
    qemu.close()

    cfg = RelayConfig(connect_timeout_s=2.0, setup_timeout_s=0.5)
    port = free_port()
    relay = source_relay(dest.address, prepare(dest, port, 1), port, 1, config=cfg)
    assert not relay.wait(5)
    assert "only 0 of 2 data channels connected within 0.5 s" in relay.error
    relay.close()


def test_buffers_are_bounded_when_the_destination_does_not_read(dest):
    port = free_port()
    session = prepare(dest, port, 0)
    qemu = FakeDestQemu(port, read=False)
    relay = source_relay(dest.address, session, port, 0)
    s0 = qemu_connect(port, MAGIC_MAIN)
    s0.setblocking(False)
    sent, idle_since = 0, time.monotonic()
    chunk = bytes(256 * 1024)
    while time.monotonic() - idle_since < 1.0:
        try:
            sent += s0.send(chunk)
            idle_since = time.monotonic()
        except BlockingIOError:
            time.sleep(0.01)
        assert sent < 64 * 1024 * 1024, "the relay buffers without bound"
    # QEMU's socket buffer + proxy buffers + link + destination: a few MiB at most
    assert sent < 24 * 1024 * 1024
    relay.close()
    s0.close()
    qemu.close()
