"""Run the pulse client in the lab's client namespace for the duration of an action."""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from perfplus_agent.errors import PerfplusError
from perfplus_agent.lab.guest_xml import PULSE_PORT
from perfplus_agent.lab.layout import LabLayout
from perfplus_agent.lab.pulse_client import CONNECTED

__all__ = ["ServiceProbe", "ServiceResult"]

CONNECT_TIMEOUT_S = 20.0  # the client's first TCP reply from the guest


@dataclass(frozen=True)
class ServiceResult:
    """What the client saw over TCP and UDP while the probe ran."""

    tcp_sent: int
    tcp_received: int
    tcp_max_gap_ms: float
    tcp_error: str | None
    udp_max_gap_ms: float
    boot_ids: list[str]

    @property
    def connection_kept(self) -> bool:
        """The TCP connection lived through, and the guest never rebooted."""
        return self.tcp_error is None and len(self.boot_ids) == 1 and self.tcp_received > 0


class ServiceProbe:
    """``with ServiceProbe(lab, ip) as probe: ...`` then ``probe.result``."""

    def __init__(self, layout: LabLayout, ip: str, rate_hz: float = 200.0,
                 max_seconds: float = 600.0) -> None:
        self.argv = ["ip", "netns", "exec", layout.client_netns, sys.executable, "-m",
                     "perfplus_agent.lab.pulse_client", ip, str(PULSE_PORT),
                     "--rate", str(rate_hz), "--max-seconds", str(max_seconds)]
        self.proc: subprocess.Popen[str] | None = None
        self.result: ServiceResult | None = None

    def start(self, settle_s: float = 0.5) -> ServiceProbe:
        """Start the client and return once it has its first TCP reply (then ``settle_s``
        more), so that what follows is measured on an open connection."""
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, text=True)
        assert self.proc.stderr is not None
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stderr], [], [],
                                        max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            line = self.proc.stderr.readline()
            if not line:  # the client ended: stop() reports why
                self.stop()
                return self
            if line.strip() == CONNECTED:
                time.sleep(settle_s)
                return self
        self.stop()
        raise PerfplusError(f"service probe: no reply from the guest within "
                            f"{CONNECT_TIMEOUT_S:.0f} s")

    def stop(self) -> ServiceResult:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate(timeout=5)
        try:
            data = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise PerfplusError(f"service probe failed: {err.strip() or out.strip()}") from None
        if "error" in data:
            raise PerfplusError(f"service probe: {data['error']}")
        tcp, udp = data["tcp"], data["udp"]
        self.result = ServiceResult(
            tcp_sent=tcp["sent"], tcp_received=tcp["received"], tcp_max_gap_ms=tcp["max_gap_ms"],
            tcp_error=tcp["error"], udp_max_gap_ms=udp["max_gap_ms"],
            boot_ids=sorted(set(tcp["boot_ids"]) | set(udp["boot_ids"])),
        )
        return self.result

    def __enter__(self) -> ServiceProbe:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        if self.result is None and self.proc is not None:
            self.stop()
