"""``lab down`` removes everything, even after a crash in the middle of ``lab up``; a second
``lab up`` reuses a healthy lab and cleans a broken one."""

import json
import os
import signal
import subprocess
import time

import pytest

from perfplus_agent.lab import netns
from perfplus_agent.lab.guests import Guests
from perfplus_agent.lab.lab import Lab
from perfplus_agent.lab.layout import LabLayout
from tests.conftest import PERFPLUS, assert_nothing_left, perfplus

pytestmark = pytest.mark.integration


def lab_name(tag: str) -> str:
    return f"pt{tag}{os.getpid() % 1000}"


def qemu_pids_in(ns: str) -> list[int]:
    found = []
    for pid in netns.pids_in_netns(ns):
        try:
            with open(f"/proc/{pid}/comm") as fh:
                if fh.read().startswith("qemu-system"):
                    found.append(pid)
        except OSError:
            pass
    return found


def test_down_removes_hosts_guests_namespaces_mounts_and_files():
    lab = Lab(LabLayout.create(lab_name("d"), 2))
    lab.up()
    try:
        Guests(lab).create("g1", "h2", 128)
        qemus = qemu_pids_in(lab.layout.host(2).netns)
        assert len(qemus) == 1
    finally:
        res = perfplus("lab", "down", "--name", lab.layout.name)
    assert res.returncode == 0, res.stderr
    assert "down: removed" in res.stderr
    assert_nothing_left(lab.layout)
    assert not any(os.path.exists(f"/proc/{p}") for p in qemus), "QEMU survived lab down"
    again = perfplus("lab", "down", "--name", lab.layout.name)
    assert again.returncode == 0 and "nothing to remove" in again.stderr


def test_crash_in_the_middle_of_up_is_cleaned_by_down():
    layout = LabLayout.create(lab_name("c"), 3)
    proc = subprocess.Popen([*PERFPLUS, "lab", "up", "--name", layout.name],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until at least one host is running
            try:
                record = json.loads(layout.state_file.read_text())
                if any(h.get("init_pid") for h in record["host_records"]):
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.01)
        else:
            pytest.fail("lab up never started a host")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert record["phase"] == "building"
    assert [n for n in netns.listing() if layout.owns_netns(n)], "the crash left something"
    res = perfplus("lab", "down", "--name", layout.name)
    assert res.returncode == 0, res.stderr
    assert_nothing_left(layout)


def test_second_up_reuses_a_healthy_lab_and_cleans_a_broken_one():
    layout = LabLayout.create(lab_name("r"), 1)
    try:
        first = perfplus("lab", "up", "--name", layout.name, "--hosts", "1")
        assert first.returncode == 0, first.stderr
        pid = Lab(layout).init_pid(layout.host(1))
        again = perfplus("lab", "up", "--name", layout.name, "--hosts", "1")
        assert again.returncode == 0 and "reusing it" in again.stderr
        assert Lab(layout).init_pid(layout.host(1)) == pid
        os.kill(pid, signal.SIGKILL)  # the host dies behind the lab's back
        time.sleep(0.2)
        third = perfplus("lab", "up", "--name", layout.name, "--hosts", "1")
        assert third.returncode == 0, third.stderr
        assert "cleaning leftovers" in third.stderr
        assert Lab(layout).healthy()
        assert Lab(layout).init_pid(layout.host(1)) != pid
    finally:
        perfplus("lab", "down", "--name", layout.name)
    assert_nothing_left(layout)
