"""Shared fixtures. Integration tests need root; they build their own labs (names start with
``pt``) and remove them, checking that nothing is left behind."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from perfplus_agent.lab import netns
from perfplus_agent.lab.guests import Guests
from perfplus_agent.lab.lab import Lab
from perfplus_agent.lab.layout import LabLayout

PERFPLUS = [sys.executable, "-m", "perfplus_agent.cli"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="integration tests need root (namespaces, libvirtd, QEMU)")
    for item in items:
        if "integration" in item.keywords:
            item.add_marker(skip)


def perfplus(*args: str, timeout: float = 300, env: dict[str, str] | None = None,
             prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the ``perfplus`` CLI as a user would, in a subprocess."""
    return subprocess.run([*(prefix or []), *PERFPLUS, *args], capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL, check=False)


def assert_nothing_left(layout: LabLayout) -> None:
    """No namespace, process, state file or lock of the lab remains."""
    assert [n for n in netns.listing() if layout.owns_netns(n)] == []
    assert not layout.state_dir.exists()
    assert not (layout.root / f".{layout.name}.lock").exists()
    needle = str(layout.state_dir)
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
                mounts = Path(f"/proc/{pid}/mountinfo").read_text()
            except OSError:
                continue
            assert needle not in cmdline, f"process {pid} of the lab survives: {cmdline!r}"
            assert needle not in mounts, f"process {pid} still has a mount of the lab"


@contextlib.contextmanager
def built_lab(name: str, hosts: int = 3, cluster: bool = False) -> Iterator[Lab]:
    """A lab for the duration of a block; afterwards nothing of it may remain."""
    lab = Lab(LabLayout.create(name, hosts))
    lab.up(cluster=cluster)
    try:
        yield lab
    finally:
        lab.down()
        assert_nothing_left(lab.layout)


@pytest.fixture(scope="session")
def lab3() -> Iterator[Lab]:
    """A 3-host lab shared by the tests of a session."""
    with built_lab(f"pt{os.getpid() % 10000}") as lab:
        yield lab


@pytest.fixture
def guests(lab3: Lab) -> Iterator[Guests]:
    """The shared lab's guests; every guest a test creates is destroyed after it."""
    g = Guests(lab3)
    yield g
    for name in g.names():
        g.destroy(name)
