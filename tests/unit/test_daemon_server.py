"""Daemon: the server's doors (no key, garbage, stalls), requests, and a migration through it
with a fake libvirt step that plays both QEMUs on loopback."""

import os
import socket
import threading
import time

import pytest
from click.testing import CliRunner

from perfplus_agent.cli import cli
from perfplus_agent.daemon.client import DaemonError, request
from perfplus_agent.daemon.handshake import MAGIC, PROTOCOL_VERSION
from perfplus_agent.daemon.protocol import MAX_MESSAGE, encode
from perfplus_agent.daemon.relay import RelayConfig
from perfplus_agent.daemon.secure_channel import connect_secure
from perfplus_agent.daemon.server import (
    REPORTED_ITERATIONS,
    DaemonServer,
    ServerConfig,
    _perfplus,
)
from perfplus_agent.daemon.transform import MAGIC_MAIN, MAGIC_MULTIFD
from perfplus_agent.errors import PerfplusError
from perfplus_agent.stream import StreamSession

pytestmark = pytest.mark.timeout(60)
KEY = bytes(range(32))
FAST = RelayConfig(connect_timeout_s=2.0, send_timeout_s=3.0, idle_timeout_s=5.0,
                   setup_timeout_s=5.0)


def addr(server):
    host, port = server.address
    return f"{host}:{port}"


def make_server(**kw):
    migrate_fn = kw.pop("migrate_fn", None)
    transform = kw.pop("make_transform", None)
    cfg = ServerConfig(listen=("127.0.0.1", 0), handshake_timeout_s=0.5, relay=FAST, **kw)
    extra = {"make_transform": transform} if transform else {}
    server = DaemonServer(KEY, cfg, migrate_fn=migrate_fn, **extra)
    server.start()
    return server


@pytest.fixture
def server():
    s = make_server()
    yield s
    s.stop()


def closes_without_a_word(sock, within=3.0, allowed=b""):
    """Everything the server sends before closing (must be ``allowed``), within a bound."""
    sock.settimeout(within)
    got = b""
    t0 = time.monotonic()
    try:
        while chunk := sock.recv(4096):
            got += chunk
    except ConnectionResetError:
        pass
    assert time.monotonic() - t0 < within
    return got


def test_ping(server):
    answer = request(server.address, KEY, {"op": "ping"}, 5)
    assert answer["ok"] and answer["version"]


def test_wrong_key_gets_nothing_but_a_nonce(server):
    with pytest.raises(DaemonError, match="cluster key"):
        request(server.address, bytes(32), {"op": "ping"}, 5)
    sock = socket.create_connection(server.address, timeout=5)
    sock.sendall(MAGIC + bytes([PROTOCOL_VERSION]) + os.urandom(32))
    hello = sock.recv(36, socket.MSG_WAITALL)
    assert hello[:4] == MAGIC + bytes([PROTOCOL_VERSION])
    sock.sendall(os.urandom(32))  # a proof made without the key
    assert closes_without_a_word(sock) == b""
    sock.close()


@pytest.mark.parametrize("junk", [b"GET / HTTP/1.0\r\n\r\n" * 3, os.urandom(4096), b""])
def test_garbage_or_silence_is_dropped(server, junk):
    sock = socket.create_connection(server.address, timeout=5)
    sock.sendall(junk)
    assert closes_without_a_word(sock) == b""
    sock.close()
    assert request(server.address, KEY, {"op": "ping"}, 5)["ok"]  # still serving


def test_bad_requests_get_errors_and_the_connection_stays_usable(server):
    channel = connect_secure(server.address, KEY, 5)
    for bad in (b"not json", encode({"op": "format-disk"}), encode({"op": "ping", "x": 1})):
        channel.send(bad)
        assert b'"ok":false' in channel.recv(timeout=5)
    channel.send(encode({"op": "ping"}))
    assert b'"ok":true' in channel.recv(timeout=5)
    channel.close(graceful=True)


def test_prepare_refuses_a_busy_port_and_data_for_unknown_sessions(server):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        answer = request(server.address, KEY, {"op": "prepare-incoming", "port": port}, 5)
    assert answer == {"ok": False, "error": f"port {port} is in use on this node",
                      "code": "port-busy"}
    answer = request(server.address, KEY, {"op": "data", "session": "nope", "channel": 0}, 5)
    assert answer == {"ok": False, "error": "unknown migration session"}


MIGRATE = {"op": "migrate", "domain": "vm1", "dest_node": "h2",
           "dest_uri": "qemu+tcp://h2-mig/system"}


def fake_libvirt(received):
    """Plays libvirt + both QEMUs: destination QEMU on 127.0.0.2:port, source QEMU connecting
    to the proxy at 127.0.0.1:port, channels in order, a reply on each return path."""

    def run(msg, port):
        listener = socket.socket()
        listener.bind(("127.0.0.2", port))
        listener.listen(8)
        listener.settimeout(10)

        def dest_qemu():
            for i in range(msg.channels + 1):
                conn, _ = listener.accept()
                conn.settimeout(10)
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
                received.append(data)
                conn.sendall(b"done%d" % i)
                conn.close()

        thread = threading.Thread(target=dest_qemu, daemon=True)
        thread.start()
        socks = []
        for i in range(msg.channels + 1):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall((MAGIC_MAIN if i == 0 else MAGIC_MULTIFD) + b"page" * 50_000)
            socks.append(s)
        for s in socks:
            s.shutdown(socket.SHUT_WR)
        replies = []
        for s in socks:
            s.settimeout(10)
            replies.append(s.recv(16).decode())
            s.close()
        thread.join(10)
        listener.close()
        if msg.domain == "fails":
            raise PerfplusError("migration of fails failed: operation aborted")
        return {"replies": replies, "wall_s": 0.1}

    return run


class Upper:
    def __init__(self, first, index):
        pass

    def feed(self, chunk):
        return chunk.replace(b"page", b"")

    def finish(self):
        return b""


@pytest.mark.parametrize(("channels", "transform"), [(0, None), (3, None), (2, Upper)])
def test_migrate_through_both_daemons(channels, transform):
    received = []
    dest = make_server(qemu_host="127.0.0.2", port_range=(49750, 49759))
    src = make_server(port_range=(49750, 49759), migrate_fn=fake_libvirt(received),
                      make_transform=transform)
    try:
        answer = request(src.address, KEY, {**MIGRATE, "dest_address": addr(dest),
                                            "channels": channels}, 30)
    finally:
        src.stop()
        dest.stop()
    assert answer["ok"], answer
    assert answer["replies"] == [f"done{i}" for i in range(channels + 1)]
    assert 49750 <= answer["port"] <= 49759
    relay = answer["relay"]
    assert relay["error"] is None and len(relay["channels"]) == channels + 1
    assert relay["bytes_in"] == (channels + 1) * 200_004
    if transform:
        assert relay["bytes_out"] == (channels + 1) * 4
        assert received == [MAGIC_MAIN] + [MAGIC_MULTIFD] * channels
    else:
        assert relay["bytes_out"] == relay["bytes_in"]
        assert received[0].startswith(MAGIC_MAIN)


@pytest.mark.parametrize("mode", ["perfplus", "measure", "off", True, False])
def test_migrate_reports_the_filter_mode(mode):
    dest = make_server(qemu_host="127.0.0.2", port_range=(49770, 49779))
    src = make_server(port_range=(49770, 49779), migrate_fn=fake_libvirt([]))
    try:
        answer = request(src.address, KEY, {**MIGRATE, "dest_address": addr(dest),
                                            "filter": mode}, 30)
    finally:
        src.stop()
        dest.stop()
    assert answer["ok"], answer
    want = {True: "perfplus", False: "off"}.get(mode, mode)
    if want == "off":
        assert answer["perfplus"] is None
    else:
        perfplus = answer["perfplus"]
        assert perfplus["filter"] == want
        # the fake stream is QEVM with a bad version: the rewriter stands aside
        assert perfplus["mode"] == "passthrough"
        assert "pages_unchanged" in perfplus["totals"]
    assert answer["relay"]["bytes_out"] == answer["relay"]["bytes_in"]


def test_migrate_failures_are_clear():
    dest = make_server(qemu_host="127.0.0.2", port_range=(49760, 49769))
    src = make_server(port_range=(49760, 49769), migrate_fn=fake_libvirt([]))
    try:
        answer = request(src.address, KEY, {**MIGRATE, "domain": "fails",
                                            "dest_address": addr(dest)}, 30)
        assert answer["ok"] is False
        assert answer["error"] == "migration of fails failed: operation aborted"
        assert "relay" in answer
        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))
            nowhere = f"127.0.0.1:{unused.getsockname()[1]}"
        answer = request(src.address, KEY, {**MIGRATE, "dest_address": nowhere}, 30)
        assert answer["ok"] is False and "cannot connect to the daemon" in answer["error"]
        other_key = DaemonServer(bytes(32), ServerConfig(listen=("127.0.0.1", 0)))
        other_key.start()
        answer = request(src.address, KEY, {**MIGRATE, "dest_address": addr(other_key)},
                         30)
        other_key.stop()
        assert answer["ok"] is False and "cluster key" in answer["error"]
    finally:
        src.stop()
        dest.stop()


def test_cli_keygen_and_help(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["daemon", "keygen", "--key-file", str(tmp_path / "k")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    result = runner.invoke(cli, ["daemon", "--help"])
    assert "--port-range" in result.output and "keygen" in result.output


def test_the_answer_of_a_long_migration_fits_in_one_message():
    """A migration that ran hundreds of passes (one that never converged) still gets its
    answer: the first and last passes' figures, the totals of all, the count left out."""
    stream = StreamSession(0)
    for index in range(700):
        stream.stats.add(index, pages_seen=10, pages_forwarded=7, pages_dropped=3,
                         bytes_in=40960, bytes_out=28672)
    figures = _perfplus(stream)
    assert figures is not None
    assert len(figures["iterations"]) == REPORTED_ITERATIONS
    assert figures["iterations_omitted"] == 700 - REPORTED_ITERATIONS
    assert figures["totals"]["pages_seen"] == 7000
    assert figures["iterations"][-1]["index"] == 699
    assert len(encode({"ok": True, "perfplus": figures})) <= MAX_MESSAGE
