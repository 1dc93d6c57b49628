"""Simulated hosts: each runs its own libvirtd, reachable by peers over the migration
network only."""

import pytest

from perfplus_agent.lab.hosts import enter_argv
from perfplus_agent.libvirt_conn import open_connection
from perfplus_agent.proc import run

pytestmark = pytest.mark.integration


def test_each_host_has_its_own_libvirt(lab3):
    uuids = set()
    for host in lab3.layout.all_hosts():
        conn = open_connection(host.local_uri)
        assert conn.getHostname() == host.name
        uuids.add(conn.getCapabilities().split("<uuid>")[1][:36])
        conn.close()
    assert len(uuids) == 3, "every host needs its own host UUID or libvirt refuses to migrate"


def test_peers_reach_libvirt_over_the_migration_network_only(lab3):
    h1 = lab3.layout.host(1)
    pid = lab3.init_pid(h1)
    for peer in ("h2", "h3"):
        out = run(enter_argv(pid, ["virsh", "-c", f"qemu+tcp://{peer}-mig/system", "hostname"]))
        assert out.stdout.strip() == peer
    over_lan = run(enter_argv(pid, ["virsh", "-c", "qemu+tcp://h2/system", "hostname"]),
                   check=False)
    assert over_lan.returncode != 0


def test_hosts_have_private_filesystems(lab3):
    for host in lab3.layout.all_hosts():
        conf = run(enter_argv(lab3.init_pid(host), ["cat", "/etc/libvirt/libvirtd.conf"])).stdout
        assert f'listen_addr = "{host.mig_addr}"' in conf
    procs = run(enter_argv(lab3.init_pid(lab3.layout.host(1)), ["ps", "-e", "-o", "comm="])
                ).stdout.split()
    assert procs.count("libvirtd") == 1, "a host must only see its own processes"


def test_status_reports_every_host(lab3):
    status = lab3.status()
    assert [s.name for s in status] == ["h1", "h2", "h3"]
    assert all(s.init_alive and s.libvirt_ok for s in status)
