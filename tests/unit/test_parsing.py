"""Parsing of user input: memory sizes, link rates, heartbeat lines, job statistics."""

import pytest

from perfplus_agent.errors import UsageError
from perfplus_agent.lab.console import parse_heartbeat
from perfplus_agent.lab.guests import parse_memory
from perfplus_agent.lab.network import parse_rate
from perfplus_agent.migration.jobstats import JobStats


@pytest.mark.parametrize(("text", "mib"), [("256M", 256), ("1G", 1024), ("262144K", 256),
                                           ("512", 512), ("2GiB", 2048)])
def test_parse_memory(text, mib):
    assert parse_memory(text) == mib


@pytest.mark.parametrize("text", ["lots", "32M", "1000K", "-1G", ""])
def test_parse_memory_rejects(text):
    with pytest.raises(UsageError):
        parse_memory(text)


@pytest.mark.parametrize(("text", "bps"), [("1gbit", 125_000_000), ("100mbit", 12_500_000),
                                           ("32mibps", 32 * 1024 * 1024)])
def test_parse_rate(text, bps):
    assert parse_rate(text) == bps


@pytest.mark.parametrize("text", ["fast", "10kbit", "1 tbit"])
def test_parse_rate_rejects(text):
    with pytest.raises(UsageError):
        parse_rate(text)


def test_parse_heartbeat():
    hb = parse_heartbeat("HB seq=12 t=3.250 writes=100 same=50 new=40 zero=10 rate=1000")
    assert hb is not None
    assert (hb.seq, hb.guest_time, hb.same, hb.zero) == (12, 3.25, 50, 10)
    assert parse_heartbeat("VERIFY OK 12") is None


def test_jobstats_from_libvirt():
    raw = {"type": 3, "time_elapsed": 812, "downtime": 64, "memory_processed": 1 << 20,
           "memory_iteration": 3, "data_total": 200, "data_processed": 50}
    s = JobStats.from_libvirt(raw)
    assert (s.time_elapsed_ms, s.downtime_ms, s.memory_iteration) == (812, 64, 3)
    assert s.setup_ms is None
    assert s.progress == 0.25
