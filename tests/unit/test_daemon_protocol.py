"""Daemon: control message validation."""

import json

import pytest

from perfplus_agent.daemon.protocol import (
    DataOpen,
    Migrate,
    Ping,
    PrepareIncoming,
    ProtocolError,
    decode_response,
    encode,
    parse_request,
)


def req(**fields):
    return json.dumps(fields).encode()


MIGRATE = {"op": "migrate", "domain": "vm1", "dest_node": "h2", "dest_address": "h2-mig:49690",
           "dest_uri": "qemu+tcp://h2-mig/system"}


def test_valid_requests():
    assert parse_request(req(op="ping")) == Ping()
    m = parse_request(req(**MIGRATE, channels=2, timeout_s=60, bandwidth_mib=100, filter=False))
    assert m == Migrate("vm1", "h2", "h2-mig:49690", "qemu+tcp://h2-mig/system", 2, 60.0, 100,
                        "off")
    assert parse_request(req(**MIGRATE)).channels == 0
    m = parse_request(req(**MIGRATE, filter="measure", xbzrle_cache_mib=64, stop_copy_after=4))
    assert (m.filter, m.xbzrle_cache_mib, m.stop_copy_after) == ("measure", 64, 4)
    assert parse_request(req(op="prepare-incoming", port=49700)) == PrepareIncoming(49700, 0)
    assert parse_request(req(op="data", session="ab", channel=3)) == DataOpen("ab", 3)


@pytest.mark.parametrize(("value", "mode"), [
    (None, "perfplus"), ("perfplus", "perfplus"), ("measure", "measure"), ("off", "off"),
    (True, "perfplus"), (False, "off"),  # the booleans of older clients
])
def test_filter_modes(value, mode):
    fields = MIGRATE if value is None else {**MIGRATE, "filter": value}
    assert parse_request(req(**fields)).filter == mode


@pytest.mark.parametrize(("frame", "match"), [
    (b"\xff\xfe", "not valid JSON"),
    (b"{", "not valid JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"op": "ping", "op2": NaN}', "not valid JSON"),
    (req(), "missing 'op'"),
    (req(op=7), "missing 'op'"),
    (req(op="reboot"), "unknown op 'reboot'"),
    (req(op="ping", extra=1), "unknown field"),
    (req(**{**MIGRATE, "domain": ""}), "'domain' must be a non-empty string"),
    (req(**{**MIGRATE, "domain": "a\nb"}), "control characters"),
    (req(**{k: v for k, v in MIGRATE.items() if k != "dest_uri"}), "'dest_uri'"),
    (req(**MIGRATE, channels=17), "'channels' must be in 0..16"),
    (req(**MIGRATE, channels=14), r"the Perf\+ filter handles at most 13 multifd channels"),
    (req(**MIGRATE, channels=True), "'channels' must be an integer"),
    (req(**MIGRATE, channels=1.5), "'channels' must be an integer"),
    (req(**MIGRATE, timeout_s=0), "'timeout_s' must be in"),
    (req(**MIGRATE, timeout_s="5"), "'timeout_s' must be a number"),
    (req(**MIGRATE, filter="yes"), "'filter' must be one of perfplus, measure, off"),
    (req(**MIGRATE, filter=1), "'filter' must be one of"),
    (req(**MIGRATE, filter=None), "'filter' must be one of"),
    (req(op="prepare-incoming"), "'port' must be an integer"),
    (req(op="prepare-incoming", port=70000), "'port' must be in 1..65535"),
    (req(op="data", session="x", channel=-1), "'channel' must be in"),
    (b" " * 70000, "too large"),
])
def test_invalid_requests_are_named(frame, match):
    with pytest.raises(ProtocolError, match=match):
        parse_request(frame)


def test_responses():
    assert decode_response(encode({"ok": True, "x": 1})) == {"ok": True, "x": 1}
    assert decode_response(b'{"ok": false, "error": "no"}')["error"] == "no"
    for bad in (b'{"ok": 1}', b'{"ok": false}', b"[]", b""):
        with pytest.raises(ProtocolError):
            decode_response(bad)
    with pytest.raises(ProtocolError, match="exceeds"):
        encode({"ok": True, "blob": "x" * 70000})
