"""Bad input gets one clear line on stderr, a non-zero exit, and nothing half-built."""

import os
import shutil
import subprocess
import sys

import pytest

from perfplus_agent.lab import netns
from perfplus_agent.lab.layout import LabLayout
from tests.conftest import perfplus

pytestmark = pytest.mark.integration


def one_error_line(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("perfplus: error:")]
    assert len(lines) == 1, res.stderr
    return lines[0]


def test_not_root():
    name = f"ptn{os.getpid() % 1000}"
    # A user namespace without a mapping: we are uid 65534 there, with no privileges.
    res = perfplus("lab", "up", "--name", name, prefix=["unshare", "--user", "--"])
    assert "needs root" in one_error_line(res)
    assert not any(LabLayout.create(name, 3).owns_netns(n) for n in netns.listing())


def test_missing_debian_package_is_named(tmp_path):
    for tool in ("ip", "tc", "unshare", "nsenter", "mount", "virsh", "qemu-system-x86_64"):
        (tmp_path / tool).symlink_to(shutil.which(tool))
    env = {**os.environ, "PATH": str(tmp_path)}
    res = perfplus("lab", "up", "--name", f"ptm{os.getpid() % 1000}", env=env)
    line = one_error_line(res)
    assert "missing libvirtd" in line and "libvirt-daemon-system" in line


def test_bad_link_rate():
    res = perfplus("lab", "up", "--name", "ptbad", "--migration-link", "fast")
    assert "bad link rate 'fast'" in one_error_line(res)
    assert not LabLayout.create("ptbad", 3).state_dir.exists()


def test_unknown_host(lab3):
    res = perfplus("lab", "vm", "create", "x", "--host", "h9", "--name", lab3.layout.name)
    assert "unknown host 'h9': this lab has h1, h2, h3" in one_error_line(res)


def test_unknown_vm(lab3):
    res = perfplus("lab", "migrate", "nosuch", "--to", "h2", "--name", lab3.layout.name)
    assert "unknown VM 'nosuch'" in one_error_line(res)


def test_vm_that_does_not_fit(lab3):
    res = perfplus("lab", "vm", "create", "huge", "--memory", "4096G", "--name",
                   lab3.layout.name)
    assert "does not fit" in one_error_line(res)
    assert not (lab3.layout.vm_dir / "huge.json").exists()


def test_migration_to_the_host_it_is_on(lab3, guests):
    guests.create("here", "h3", 128)
    res = perfplus("lab", "migrate", "here", "--to", "h3", "--name", lab3.layout.name)
    assert "already runs on h3" in one_error_line(res)
    assert [h.name for h in guests.locate("here")] == ["h3"]


def test_lab_not_up():
    res = perfplus("lab", "migrate", "vm1", "--to", "h2", "--name", "ptnotup")
    assert "is not up: run 'perfplus lab up'" in one_error_line(res)


def test_no_kvm_device_falls_back_to_tcg(tmp_path):
    """Hide /dev/kvm in a private mount namespace and run the real probe there."""
    script = (
        "from perfplus_agent.lab.accel import probe_kvm\n"
        "from perfplus_agent.lab.image import build_image\n"
        "a = probe_kvm(build_image())\n"
        "print(a.name, '|', a.reason)\n"
    )
    shell = ("mount -t tmpfs tmpfs /dev && mknod -m 666 /dev/null c 1 3 && "
             f"exec {sys.executable} -c \"$0\"")
    res = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", shell,
                          script], capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "tcg | /dev/kvm is missing or not usable"
