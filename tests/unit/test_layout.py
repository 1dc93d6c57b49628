"""Lab names, addresses and paths."""

from pathlib import Path

import pytest

from perfplus_agent.errors import UsageError
from perfplus_agent.lab.layout import LabLayout


def lab(hosts=3):
    return LabLayout.create("x1", hosts, root=Path("/tmp/st"))


def test_namespaces_carry_the_prefix():
    lay = lab()
    assert lay.namespaces() == ["x1-sw", "x1-client", "x1-h1", "x1-h2", "x1-h3"]
    assert all(lay.owns_netns(n) for n in lay.namespaces())
    assert not lay.owns_netns("x10-h1")


def test_host_paths_map_into_private_dirs():
    h2 = lab().host(2)
    assert h2.path("/run/libvirt/libvirt-sock") == Path("/tmp/st/x1/h2/run/libvirt/libvirt-sock")
    log = Path("/tmp/st/x1/h2/var-log/libvirt/qemu/a.log")
    assert h2.path("/var/log/libvirt/qemu/a.log") == log
    assert h2.path("/var/lib/libvirt") == Path("/tmp/st/x1/h2/var-lib-libvirt")
    with pytest.raises(ValueError, match="not in a private directory"):
        h2.path("/etc/passwd")


def test_addresses_and_uris():
    h3 = lab().host(3)
    assert (h3.name, h3.lan_addr, h3.mig_addr) == ("h3", "10.77.0.3", "10.77.1.3")
    assert h3.peer_uri == "qemu+tcp://h3-mig/system"
    assert "socket=/tmp/st/x1/h3/run/libvirt/libvirt-sock" in h3.local_uri


def test_hosts_file_resolves_every_name():
    entries = lab(2).hosts_entries()
    assert "10.77.0.2 h2\n" in entries
    assert "10.77.1.2 h2-mig\n" in entries
    assert "10.77.0.250 client\n" in entries


@pytest.mark.parametrize("name", ["", "Lab", "1ab", "a-b", "abcdefghijklm"])
def test_bad_names_rejected(name):
    with pytest.raises(UsageError, match="lab name"):
        LabLayout.create(name, 3)


@pytest.mark.parametrize("hosts", [0, 9])
def test_bad_host_count_rejected(hosts):
    with pytest.raises(UsageError, match="--hosts"):
        LabLayout.create("ok", hosts)


def test_unknown_host_named():
    with pytest.raises(UsageError, match="unknown host 'h4': this lab has h1, h2, h3"):
        lab().host_named("h4")
