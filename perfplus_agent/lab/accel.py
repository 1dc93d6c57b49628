"""Which accelerator lab guests use: KVM where it really runs a guest, TCG otherwise.

``/dev/kvm`` existing is not enough: on some machines (nested setups with a PVM-style module)
the device opens fine and guests then die with emulation failures. So the probe boots the lab's
own guest under KVM and waits for its boot marker. The answer is cached per machine (QEMU
version, host kernel, image), so the probe costs its few seconds once.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from perfplus_agent.lab.image import GuestImage, cache_root

__all__ = ["Accel", "choose_accel"]

BOOT_MARKER = b"PERFPLUS-GUEST BOOTED"
PROBE_TIMEOUT = 10.0
KVM_DEVICE = Path("/dev/kvm")


@dataclass(frozen=True)
class Accel:
    """The accelerator and why it was chosen (shown to the user when it is TCG)."""

    name: str  # "kvm" or "tcg"
    reason: str

    @property
    def domain_type(self) -> str:
        """libvirt's ``<domain type=...>`` for this accelerator."""
        return "kvm" if self.name == "kvm" else "qemu"


def _qemu_version() -> str:
    out = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True,
                         timeout=10, check=False).stdout
    return out.splitlines()[0] if out else "unknown"


def probe_kvm(image: GuestImage, timeout: float = PROBE_TIMEOUT) -> Accel:
    """Boot the guest under KVM; KVM if it reaches its boot marker in time, TCG otherwise."""
    if not os.access(KVM_DEVICE, os.R_OK | os.W_OK):
        return Accel("tcg", f"{KVM_DEVICE} is missing or not usable")
    argv = ["qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-m", "128", "-nodefaults",
            "-display", "none", "-no-reboot", "-serial", "stdio", "-kernel", str(image.kernel),
            "-initrd", str(image.initrd), "-append", "console=ttyS0 panic=-1"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + timeout
    exited = False
    try:
        while time.monotonic() < deadline and BOOT_MARKER not in seen:
            ready, _, _ = select.select([proc.stdout], [], [], 0.2)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    exited = True
                    break
                seen += chunk
    finally:
        proc.kill()
        proc.wait(5)
    if BOOT_MARKER in seen:
        return Accel("kvm", "KVM booted the probe guest")
    last = seen.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
    if exited:
        return Accel("tcg", f"QEMU with KVM failed to run a guest ({last[0][:120]})")
    return Accel("tcg", f"KVM did not boot a guest within {timeout:.0f} s ({last[0][:120]})")


def choose_accel(image: GuestImage) -> Accel:
    """The cached probe result for this machine, probing first when there is none."""
    usable = os.access(KVM_DEVICE, os.R_OK | os.W_OK)
    key = f"{_qemu_version()}|{os.uname().release}|{image.initrd.parent.name}|kvm={usable}"
    path = cache_root() / "accel.json"
    try:
        cached = json.loads(path.read_text())
        if cached.get("key") == key:
            return Accel(cached["name"], cached["reason"])
    except (OSError, ValueError, KeyError):
        pass
    accel = probe_kvm(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": key, **asdict(accel)}) + "\n")
    return accel
