"""A lab guest that QEMU runs directly, driven over QMP, without libvirt.

libvirt destroys the source QEMU once a migration succeeds; a memory comparison needs both
ends kept, paused: the source in ``postmigrate``, the destination started with ``-S``. So
the Perf+ byte-for-byte tests and stream captures run guests this way, on loopback, with
the same image, accelerator choice and QEMU 7.2 TCG workaround as the lab's libvirt guests.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path
from typing import Any

from perfplus_agent.errors import PerfplusError
from perfplus_agent.lab.accel import choose_accel
from perfplus_agent.lab.console import GuestConsole
from perfplus_agent.lab.image import build_image
from perfplus_agent.lab.qmp import QMP
from perfplus_agent.qemu.tcgfix import wrapper_path

__all__ = ["DirectGuest", "MigrationFailed"]

BOOT_TIMEOUT_S = 60.0


class MigrationFailed(PerfplusError):
    """QEMU reported the migration failed (the source keeps running the guest)."""


class DirectGuest:
    """One QEMU process in ``workdir``: a booting guest, or (``incoming=True``) an empty
    destination waiting for a migration (``-incoming defer``, paused afterwards)."""

    def __init__(self, workdir: Path, name: str, memory_mib: int = 256,
                 workload: str | None = None, incoming: bool = False) -> None:
        self.workdir = workdir
        self.name = name
        self.memory_mib = memory_mib
        self.workload = workload
        self.incoming = incoming
        self.proc: subprocess.Popen[bytes] | None = None
        self.qmp: QMP | None = None
        self.console = GuestConsole(log=workdir / f"{name}.console.log",
                                    socket=workdir / f"{name}.console.sock")

    def _argv(self) -> list[str]:
        image = build_image()
        accel = choose_accel(image)
        append = "console=ttyS0 panic=-1 quiet"
        if self.workload:
            append += " perfplus.dirtier=" + ",".join(self.workload.split())
        argv = [str(wrapper_path()), "-accel", accel.name, "-machine", "pc",
                "-m", str(self.memory_mib), "-nodefaults", "-no-reboot", "-display", "none",
                "-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", append,
                "-chardev", f"socket,id=con,path={self.console.socket},server=on,wait=off,"
                            f"logfile={self.console.log},logappend=on",
                "-serial", "chardev:con",
                "-qmp", f"unix:{self.workdir / (self.name + '.qmp')},server=on,wait=off"]
        if accel.name == "kvm":
            argv[3:3] = ["-cpu", "host"]
        if self.incoming:
            argv += ["-S", "-incoming", "defer"]
        return argv

    def start(self) -> DirectGuest:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / f"{self.name}.qemu.log", "wb")  # noqa: SIM115 (kept open)
        self.proc = subprocess.Popen(self._argv(), stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        try:
            self.qmp = QMP(self.workdir / f"{self.name}.qmp")
        except PerfplusError:
            self.stop()
            raise PerfplusError(f"QEMU for {self.name} did not start: {self.qemu_log()}") from None
        return self

    def qemu_log(self) -> str:
        path = self.workdir / f"{self.name}.qemu.log"
        return path.read_text(errors="replace").strip()[-500:] if path.exists() else ""

    def wait_ready(self, timeout: float = BOOT_TIMEOUT_S) -> None:
        """Wait for the workload's READY line."""
        self.console.wait_for(r"^READY ", timeout)

    def cmd(self, execute: str, **arguments: Any) -> Any:
        assert self.qmp is not None, "guest not started"
        return self.qmp.cmd(execute, **arguments)

    def configure_migration(self, capabilities: dict[str, bool] | None = None,
                            parameters: dict[str, Any] | None = None) -> None:
        """Set migration capabilities and parameters (both ends must agree on multifd)."""
        if capabilities:
            self.cmd("migrate-set-capabilities", capabilities=[
                {"capability": k, "state": v} for k, v in capabilities.items()])
        if parameters:
            self.cmd("migrate-set-parameters", **parameters)

    def listen(self, uri: str) -> None:
        self.cmd("migrate-incoming", uri=uri)

    def migrate(self, uri: str, timeout: float = 300.0) -> dict[str, Any]:
        """Migrate to ``uri`` and wait; the final ``query-migrate``, MigrationFailed if QEMU
        failed it, and a cancelled migration (guest still here) after ``timeout``."""
        self.cmd("migrate", uri=uri)
        deadline = time.monotonic() + timeout
        while True:
            info = self.cmd("query-migrate")
            status = info.get("status")
            if status == "completed":
                return info
            if status in ("failed", "cancelled"):
                raise MigrationFailed(f"migration of {self.name} {status}: "
                                      f"{info.get('error-desc', 'no reason given')}")
            if time.monotonic() > deadline:
                self.cmd("migrate_cancel")
                raise MigrationFailed(f"migration of {self.name} took over {timeout:.0f} s: "
                                      "cancelled")
            time.sleep(0.05)

    def wait_incoming_done(self, timeout: float = 60.0) -> str:
        """On a destination: wait until the incoming migration ended; its run state."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.cmd("query-status")["status"]
            if status not in ("inmigrate",):
                return status
            time.sleep(0.05)
        raise MigrationFailed(f"{self.name} still receiving after {timeout:.0f} s")

    def ram_bytes(self) -> int:
        return int(self.cmd("query-memory-size-summary")["base-memory"])

    def dump_ram(self, path: Path) -> Path:
        """Write the guest's whole RAM (guest-physical 0 .. RAM size) to ``path``."""
        self.cmd("pmemsave", val=0, size=self.ram_bytes(), filename=str(path))
        return path

    def stop(self) -> None:
        """Kill QEMU (bounded) and close the monitor."""
        if self.qmp is not None:
            self.qmp.close()
            self.qmp = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> DirectGuest:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
