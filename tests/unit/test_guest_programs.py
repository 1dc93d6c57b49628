"""Unit tests of the lab guest programs (dirtier, pulse), built and run natively on the host.

Both are ordinary static Linux programs, so their protocols can be checked here without a VM:
dirtier is driven through stdin/stdout like the serial console, pulse over TCP and UDP on
127.0.0.1.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

GUEST_DIR = Path(__file__).resolve().parents[2] / "perfplus_agent" / "lab" / "guest"
TIMEOUT = 5.0

HB_RE = re.compile(
    r"HB seq=(?P<seq>\d+) t=(?P<t>\d+\.\d{3}) writes=(?P<writes>\d+) same=(?P<same>\d+)"
    r" new=(?P<new>\d+) zero=(?P<zero>\d+) rate=(?P<rate>\d+)"
)
# Every line dirtier may print on stdout.
DIRTIER_LINE_RE = re.compile(
    HB_RE.pattern + r"|READY pages=\d+ mib=\d+|VERIFY OK \d+|VERIFY FAIL \d+ first=\d+"
    r"|CKSUM [0-9a-f]{16}|PAUSED|RESUMED|RATE \d+|SAME \S+|ZERO \S+|BYE|CORRUPTED \d+"
    r"|ERR (unknown|bad) \S+"
)
PULSE_START_RE = re.compile(r"PULSE listening port=(\d+) boot=([0-9a-f]{16})")


@dataclass(frozen=True)
class Heartbeat:
    """One parsed HB line."""

    seq: int
    t: float
    writes: int
    same: int
    new: int
    zero: int
    rate: int

    @classmethod
    def parse(cls, line: str) -> Heartbeat:
        m = HB_RE.fullmatch(line)
        assert m, f"not a heartbeat: {line!r}"
        d = m.groupdict()
        return cls(
            int(d["seq"]),
            float(d["t"]),
            int(d["writes"]),
            int(d["same"]),
            int(d["new"]),
            int(d["zero"]),
            int(d["rate"]),
        )


class Child:
    """A running program whose stdout lines are collected by a background thread."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self.seen: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def send(self, text: str) -> None:
        """Write one command line to stdin."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def next_line(self, timeout: float = TIMEOUT) -> str:
        """Return the next stdout line; fail on timeout or end of output."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no output within {timeout} s; seen: {self.seen[-5:]}")
        if line is None:
            pytest.fail(f"output ended (rc={self.proc.poll()}); seen: {self.seen[-5:]}")
        self.seen.append(line)
        return line

    def expect(self, prefix: str, timeout: float = TIMEOUT) -> str:
        """Skip lines (heartbeats, ...) until one starts with prefix."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.next_line(max(0.01, deadline - time.monotonic()))
            if line.startswith(prefix):
                return line

    def heartbeat(self, timeout: float = TIMEOUT) -> Heartbeat:
        """Return the next HB line, parsed."""
        return Heartbeat.parse(self.expect("HB ", timeout))

    def ask(self, command: str, prefix: str) -> str:
        """Send a command and return its reply."""
        self.send(command)
        return self.expect(prefix)

    def close(self) -> None:
        """Kill the program if it still runs, and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=TIMEOUT)
        self._reader.join(timeout=TIMEOUT)  # it sees EOF once the program is gone
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def assert_dirtier_grammar(child: Child) -> None:
    """Every line dirtier printed must be one complete protocol line."""
    bad = [line for line in child.seen if not DIRTIER_LINE_RE.fullmatch(line)]
    assert not bad, f"lines outside the protocol: {bad[:5]}"


def compile_guest(name: str, out_dir: Path) -> tuple[Path, str]:
    """Build one guest program the way the lab does; return (binary, compiler stderr)."""
    out = out_dir / name
    src = GUEST_DIR / f"{name}.c"
    cmd = ["gcc", "-O2", "-static", "-Wall", "-Wextra", "-o", str(out), str(src)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, f"gcc failed for {name}:\n{res.stderr}"
    return out, res.stderr


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """Both guest programs, compiled once per module."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    out_dir = tmp_path_factory.mktemp("guest-bin")
    return {name: compile_guest(name, out_dir) for name in ("dirtier", "pulse")}


@pytest.fixture
def spawn() -> Iterator[Callable[..., Child]]:
    """Start programs as Child objects; all of them are killed at teardown."""
    children: list[Child] = []

    def start(*argv: str | Path) -> Child:
        child = Child([str(a) for a in argv])
        children.append(child)
        return child

    yield start
    for child in children:
        child.close()


@pytest.fixture
def dirtier(builds: dict[str, tuple[Path, str]]) -> Path:
    return builds["dirtier"][0]


@pytest.fixture
def pulse(builds: dict[str, tuple[Path, str]]) -> Path:
    return builds["pulse"][0]


@pytest.mark.parametrize("name", ["dirtier", "pulse"])
def test_compiles_without_warnings(builds: dict[str, tuple[Path, str]], name: str) -> None:
    _, stderr = builds[name]
    assert stderr.strip() == ""


# ---- dirtier ----------------------------------------------------------------------------------


def test_dirtier_ready_verify_and_reproducible_checksum(
    dirtier: Path, spawn: Callable[..., Child]
) -> None:
    """A paused start verifies, and its checksum is stable and depends only on the seed."""
    sums = []
    for seed in ("7", "7", "8"):
        d = spawn(dirtier, "-m", "2", "-p", "-i", "0", "-S", seed)
        assert d.next_line() == "READY pages=512 mib=2"
        assert d.ask("v", "VERIFY") == "VERIFY OK 512"
        first, second = d.ask("c", "CKSUM"), d.ask("c", "CKSUM")
        assert first == second
        sums.append(first)
        assert d.ask("q", "BYE") == "BYE"
        assert d.proc.wait(timeout=TIMEOUT) == 0
        assert_dirtier_grammar(d)
    assert sums[0] == sums[1]
    assert sums[0] != sums[2]


@pytest.mark.parametrize(
    ("args", "kinds"),
    [
        (["-s", "0.3", "-z", "0.3"], {"same", "new", "zero"}),
        (["-s", "0.2", "-z", "0.2", "-w", "8"], {"same", "new", "zero"}),
        (["-s", "0", "-z", "0", "-w", "1"], {"new"}),
        (["-x"], {"new"}),
    ],
    ids=["pages", "small-new", "one-word", "random-words"],
)
def test_dirtier_writes_keep_digests_consistent(
    dirtier: Path, spawn: Callable[..., Child], args: list[str], kinds: set[str]
) -> None:
    """Flat-out writes of each kind change the content, and VERIFY still passes."""
    d = spawn(dirtier, "-m", "1", "-r", "0", "-i", "0", "-p", "-S", "3", *args)
    d.expect("READY")
    before = d.ask("c", "CKSUM")
    assert d.ask("r", "RESUMED") == "RESUMED"
    time.sleep(0.3)
    sent = time.monotonic()
    assert d.ask("p", "PAUSED") == "PAUSED"
    assert time.monotonic() - sent < 1.0, "pause took too long under a flat-out workload"
    d.send("s")
    a = d.heartbeat()
    time.sleep(0.2)
    d.send("s")
    b = d.heartbeat()
    assert b.seq == a.seq + 1
    assert a.writes == b.writes, "writes went on while paused"
    assert a.writes == a.same + a.new + a.zero
    assert a.writes > 1000
    counts = {"same": a.same, "new": a.new, "zero": a.zero}
    assert {k for k, v in counts.items() if v > 0} == kinds
    assert d.ask("v", "VERIFY") == "VERIFY OK 256"
    assert d.ask("c", "CKSUM") != before
    assert_dirtier_grammar(d)


@pytest.mark.parametrize(
    "args",
    [["-s", "0"], ["-s", "0", "-z", "1"], ["-s", "1"], ["-x"]],
    ids=["new", "zero", "same", "random-words"],
)
def test_dirtier_detects_corruption_even_after_rewrites(
    dirtier: Path, spawn: Callable[..., Child], args: list[str]
) -> None:
    """A bit flipped behind the digest is reported, and later writes do not hide it."""
    d = spawn(dirtier, "-m", "1", "-r", "0", "-i", "0", "-p", *args)
    d.expect("READY")
    assert d.ask("CORRUPT 7", "CORRUPTED") == "CORRUPTED 7"
    assert d.ask("v", "VERIFY") == "VERIFY FAIL 1 first=7"
    d.ask("r", "RESUMED")
    time.sleep(0.3)  # every page is rewritten many times at full speed
    d.ask("p", "PAUSED")
    d.send("s")
    assert d.heartbeat().writes > 5000
    assert d.ask("v", "VERIFY") == "VERIFY FAIL 1 first=7"
    assert d.ask("CORRUPT 256", "ERR") == "ERR bad CORRUPT"
    assert_dirtier_grammar(d)


def _measured_rate(d: Child, span: float) -> tuple[float, Heartbeat]:
    """Writes/s between the next heartbeat and the first one at least span seconds later."""
    a = d.heartbeat()
    b = a
    while b.t - a.t < span:
        b = d.heartbeat()
    return (b.writes - a.writes) / (b.t - a.t), b


def test_dirtier_rate_control(dirtier: Path, spawn: Callable[..., Child]) -> None:
    """-r and R pace the writes to the target rate (within 30 %)."""
    d = spawn(dirtier, "-m", "1", "-r", "2000", "-i", "0.2")
    d.expect("READY")
    rate, hb = _measured_rate(d, 0.8)
    assert hb.rate == 2000
    assert 1400 <= rate <= 2600
    assert d.ask("R 500", "RATE") == "RATE 500"
    rate, hb = _measured_rate(d, 0.8)
    assert hb.rate == 500
    assert 350 <= rate <= 650
    assert_dirtier_grammar(d)


def test_dirtier_heartbeat_sequence(dirtier: Path, spawn: Callable[..., Child]) -> None:
    """Periodic and on-demand HB lines share one sequence counting up from 1."""
    d = spawn(dirtier, "-m", "1", "-r", "100", "-i", "0.1")
    d.expect("READY")
    beats = [d.heartbeat() for _ in range(3)]
    d.send("s")
    beats += [d.heartbeat() for _ in range(3)]
    assert [b.seq for b in beats] == list(range(1, 7))
    assert all(b2.t >= b1.t for b1, b2 in itertools.pairwise(beats))
    assert all(b2.writes >= b1.writes for b1, b2 in itertools.pairwise(beats))
    assert abs(time.monotonic() - beats[-1].t) < 2.0, "t is not CLOCK_MONOTONIC"
    # Without stdin it keeps running.
    assert d.proc.stdin is not None
    d.proc.stdin.close()
    assert d.heartbeat().seq == 7
    assert_dirtier_grammar(d)


def test_dirtier_commands(dirtier: Path, spawn: Callable[..., Child]) -> None:
    """Each command gets its reply line; empty lines are ignored, junk is answered."""
    d = spawn(dirtier, "-m", "1", "-p", "-i", "0")
    d.expect("READY")
    d.send("")
    d.send("  ")
    assert d.ask("R 123", "") == "RATE 123"  # "" = the very next line
    assert d.ask("S 0.25", "") == "SAME 0.25"
    assert d.ask("Z 0.5", "") == "ZERO 0.5"
    assert d.ask("foo", "") == "ERR unknown foo"
    assert d.ask("foo bar", "") == "ERR unknown foo"
    assert d.ask("R abc", "") == "ERR bad R"
    assert d.ask("R", "") == "ERR bad R"
    assert d.ask("S 1.5", "") == "ERR bad S"
    assert d.ask("Z -0.1", "") == "ERR bad Z"
    assert d.ask("v now", "") == "ERR bad v"
    assert d.ask("x" * 300, "") == "ERR bad line-too-long"
    hb = Heartbeat.parse(d.ask("s", ""))
    assert (hb.seq, hb.writes, hb.rate) == (1, 0, 123)
    assert d.ask("p", "") == "PAUSED"
    assert d.ask("r", "") == "RESUMED"
    assert d.ask("p\r", "") == "PAUSED"  # a CR from a console is tolerated
    assert d.ask("q", "") == "BYE"
    assert d.proc.wait(timeout=TIMEOUT) == 0
    assert_dirtier_grammar(d)


@pytest.mark.parametrize(
    "args",
    [
        ["-m", "0"],
        ["-m", "abc"],
        ["-r", "-5"],
        ["-s", "1.5"],
        ["-z", "nan"],
        ["-w", "0"],
        ["-w", "513"],
        ["-i", "-1"],
        ["-S", "x"],
        ["-Q"],
        ["extra"],
    ],
)
def test_dirtier_bad_options(dirtier: Path, args: list[str]) -> None:
    res = subprocess.run(
        [str(dirtier), *args], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert res.returncode == 2
    assert res.stderr.strip()
    assert res.stdout == ""


# ---- pulse ------------------------------------------------------------------------------------


def start_pulse(pulse: Path, spawn: Callable[..., Child], port: int = 0) -> tuple[Child, int, str]:
    """Start pulse on 127.0.0.1; return (child, port, boot id)."""
    child = spawn(pulse, "-p", str(port), "-a", "127.0.0.1")
    m = PULSE_START_RE.fullmatch(child.next_line())
    assert m, child.seen
    return child, int(m.group(1)), m.group(2)


def tcp_client(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)


def recv_lines(sock: socket.socket, count: int) -> list[str]:
    """Read exactly count newline-terminated lines (the socket has a timeout)."""
    buf = b""
    while buf.count(b"\n") < count:
        chunk = sock.recv(4096)
        assert chunk, f"connection closed after {buf!r}"
        buf += chunk
    lines = buf.decode().split("\n")
    assert len(lines) == count + 1 and lines[-1] == "", f"extra data: {buf!r}"
    return lines[:-1]


def check_pong(reply: str, seq: str, boot: str, before: int, after: int) -> None:
    """A PONG echoes seq and boot, and carries a CLOCK_MONOTONIC ns between before and after."""
    parts = reply.split(" ")
    assert parts[:3] == ["PONG", seq, boot], reply
    assert len(parts) == 4
    assert before <= int(parts[3]) <= after


def test_pulse_tcp_protocol(pulse: Path, spawn: Callable[..., Child]) -> None:
    """Partial lines, several lines per segment, CRLF, junk and over-long lines."""
    _, port, boot = start_pulse(pulse, spawn)
    with tcp_client(port) as s:
        before = time.monotonic_ns()
        s.sendall(b"PI")
        time.sleep(0.05)
        s.sendall(b"NG 1\nPING 2\r\nhello\n\nPING x\nPING 18446744073709551615\n")
        s.sendall(b"y" * 600 + b"\nPING 3\n")
        lines = recv_lines(s, 8)
        after = time.monotonic_ns()
        check_pong(lines[0], "1", boot, before, after)
        check_pong(lines[1], "2", boot, before, after)
        assert lines[2:4] == ["ERR", "ERR"]
        assert lines[4] == "ERR"
        check_pong(lines[5], "18446744073709551615", boot, before, after)
        assert lines[6] == "ERR"  # one ERR for the over-long line
        check_pong(lines[7], "3", boot, before, after)
        assert int(lines[0].split()[3]) <= int(lines[1].split()[3])


def test_pulse_many_clients_and_cleanup(pulse: Path, spawn: Callable[..., Child]) -> None:
    """64 concurrent clients are served; a 65th is refused; closed clients free their slots."""
    child, port, boot = start_pulse(pulse, spawn)
    clients = [tcp_client(port) for _ in range(64)]
    try:
        for i, s in enumerate(clients):
            s.sendall(f"PING {i}\n".encode())
        for i, s in enumerate(clients):
            assert recv_lines(s, 1)[0].startswith(f"PONG {i} {boot} ")
        with tcp_client(port) as extra:
            assert extra.recv(100) == b"", "65th client should be closed at once"
    finally:
        for s in clients:
            s.close()
    for _ in range(100):  # connect/close churn, some with unread replies
        with tcp_client(port) as s:
            s.sendall(b"PING 1\n")
    with tcp_client(port) as s:
        s.sendall(b"PING 99\n")
        assert recv_lines(s, 1)[0].startswith(f"PONG 99 {boot} ")
    assert child.proc.poll() is None


def test_pulse_udp(pulse: Path, spawn: Callable[..., Child]) -> None:
    """Each datagram is answered to its sender, on the same port as TCP."""
    _, port, boot = start_pulse(pulse, spawn)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(TIMEOUT)
        for seq, payload in (("5", b"PING 5"), ("6", b"PING 6\n")):
            before = time.monotonic_ns()
            u.sendto(payload, ("127.0.0.1", port))
            data, addr = u.recvfrom(200)
            check_pong(data.decode(), seq, boot, before, time.monotonic_ns())
            assert addr == ("127.0.0.1", port)
        u.sendto(b"junk", ("127.0.0.1", port))
        assert u.recvfrom(200)[0] == b"ERR"


def test_pulse_boot_id_and_port_reuse(pulse: Path, spawn: Callable[..., Child]) -> None:
    """A restart gets a new boot id and can rebind the port at once (SO_REUSEADDR)."""
    first, port, boot1 = start_pulse(pulse, spawn)
    with tcp_client(port) as s:
        s.sendall(b"PING 1\n")
        recv_lines(s, 1)
        first.close()  # the server side closes first: its socket lingers in TIME_WAIT
        assert s.recv(100) == b""
    second, port2, boot2 = start_pulse(pulse, spawn, port)
    assert port2 == port
    assert boot2 != boot1
    with tcp_client(port) as s:
        s.sendall(b"PING 2\n")
        assert recv_lines(s, 1)[0].startswith(f"PONG 2 {boot2} ")
    assert second.proc.poll() is None


@pytest.mark.parametrize("args", [["-p", "70000"], ["-p", "x"], ["-a", "nowhere"], ["-z"]])
def test_pulse_bad_options(pulse: Path, args: list[str]) -> None:
    res = subprocess.run(
        [str(pulse), *args], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert res.returncode == 2
    assert res.stderr.strip()
