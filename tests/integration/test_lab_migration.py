"""Guests boot, keep running through live migrations h1 -> h2 -> h3 -> h1 with their memory
intact, their heartbeat continuing and a client's TCP connection alive."""

import pytest

from perfplus_agent.errors import UsageError
from perfplus_agent.lab.console import parse_heartbeat
from perfplus_agent.lab.service_probe import ServiceProbe
from perfplus_agent.libvirt_conn import open_connection
from perfplus_agent.qemu.tcgfix import affected, main_ram_bytes, qemu_version

pytestmark = pytest.mark.integration
WORKLOAD = "-m 64 -r 2000 -s 0.5 -z 0.1 -i 0.2"


def heartbeats(console, offset=0):
    lines, _ = console.lines(offset)
    return [hb for hb in map(parse_heartbeat, lines) if hb]


def test_guest_boots_and_beats(guests):
    guests.create("beat", "h1", 256, workload=WORKLOAD)
    console = guests.console("beat")
    first = console.wait_for(r"^HB seq=(\d+)", 10).group(1)
    later = console.wait_for(r"^HB seq=(\d+)", 10, console.size()).group(1)
    assert int(later) > int(first)
    assert console.command("v", r"^VERIFY") == "VERIFY OK 16384"
    assert [h.name for h in guests.locate("beat")] == ["h1"]


@pytest.mark.slow
def test_round_trip_keeps_memory_heartbeat_and_connection(guests):
    spec = guests.create("trip", "h1", 256, workload=WORKLOAD)
    console = guests.console("trip")
    assert console.command("p", r"^PAUSED") == "PAUSED"
    checksum = console.command("c", r"^CKSUM")
    path = ["h1"]
    for dest in ("h2", "h3", "h1"):
        result = guests.migrate("trip", dest)
        path.append(dest)
        assert [h.name for h in guests.locate("trip")] == [dest], "exactly one host runs it"
        assert guests.console("trip").command("c", r"^CKSUM") == checksum
        assert result.stats.downtime_ms is not None
    console = guests.console("trip")
    assert console.command("r", r"^RESUMED") == "RESUMED"

    # Now with the workload writing, a client connected, every hop verified.
    with ServiceProbe(guests.layout, spec.ip, rate_hz=200) as probe:
        downtimes = []
        for dest in ("h2", "h3", "h1"):
            since = guests.console("trip", guests.layout.host_named(dest)).size()
            result = guests.migrate("trip", dest)
            downtimes.append(result.stats.downtime_ms or 0)
            console = guests.console("trip")
            assert console.command("v", r"^VERIFY", timeout=60) == "VERIFY OK 16384"
            # The heartbeat goes on on the destination, same guest (no reboot marker).
            console.wait_for(r"^HB seq=", 10, since)
            lines, _ = console.lines(since)
            assert not any("PERFPLUS-GUEST BOOTED" in ln for ln in lines), "guest rebooted"
        service = probe.stop()
    assert service.connection_kept, service
    assert service.tcp_received > 0.8 * service.tcp_sent
    # The longest silence the client saw is the switch-over, not a restart.
    assert service.tcp_max_gap_ms < max(downtimes) + 1500, (service, downtimes)


def test_heartbeat_sequence_continues_across_a_migration(guests):
    guests.create("seq", "h2", 256, workload="-m 32 -r 500 -i 0.1")
    src = guests.console("seq")
    src.wait_for(r"^HB seq=", 10)
    last_src = heartbeats(src)[-1]
    guests.migrate("seq", "h3")
    dst = guests.console("seq")
    dst.wait_for(r"^HB seq=", 10)
    first_dst = heartbeats(dst)[0]
    assert first_dst.seq > last_src.seq - 5, "the destination continues the same sequence"
    assert first_dst.guest_time >= last_src.guest_time - 1.0
    assert first_dst.guest_time - last_src.guest_time < 5.0, "no long stall on the switch"


def test_wrapper_takes_guest_ram_off_the_bad_multiple(guests):
    guests.create("sized", "h1", 256)
    conn = open_connection(guests.layout.host(1).local_uri)
    try:
        dom = conn.lookupByName("sized")
        size = main_ram_bytes(dom)
        assert size is not None and size > 256 * 2**20
        assert not affected(qemu_version(conn), True, size)
    finally:
        conn.close()


def test_guest_of_the_buggy_size_is_refused(guests):
    guests.create("buggy", "h1", 256, emulator="/usr/bin/qemu-system-x86_64")
    conn = open_connection(guests.layout.host(1).local_uri)
    try:
        ram = main_ram_bytes(conn.lookupByName("buggy"))
        assert ram is not None and affected(qemu_version(conn), True, ram)
    finally:
        conn.close()
    with pytest.raises(UsageError, match=r"refusing to migrate buggy: QEMU 7\.2 under TCG"):
        guests.migrate("buggy", "h2")
    assert [h.name for h in guests.locate("buggy")] == ["h1"]
