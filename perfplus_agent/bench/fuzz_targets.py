"""Fuzz targets of the Perf+ C core, for atheris (libFuzzer) or a plain random driver.

Each target takes arbitrary bytes and must never crash, hang or break an invariant; the
documented exceptions (``UnsupportedStream`` for bad multifd packets) are expected. Run
one target under atheris with ``python -m perfplus_agent.bench.fuzz_targets NAME
-runs=N``; ``perfplus bench fuzz`` runs every target that way and reports. Note: the C
code is not compiled with libFuzzer coverage, so atheris mutates without feedback from it.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from perfplus_agent import perfplus_c as pc

__all__ = ["TARGETS", "FuzzRun", "multifd_target", "random_driver", "rewriter_target",
           "run_fuzz"]

PAGE = pc.PAGE_SIZE
_KEY = bytes(range(32))
_BLOCKS = ((b"pc.ram", 64 * PAGE), (b"rom", 2 * PAGE))


def _filter() -> pc.Filter:
    filt = pc.Filter("highwayhash", _KEY)
    for name, length in _BLOCKS:
        filt.add_block(name, length)
    return filt


def rewriter_target(data: bytes) -> None:
    """RamRewriter.feed over data cut at split points taken from its first bytes."""
    if len(data) < 2:
        return
    flags, seed = data[0], data[1]
    rw = pc.RamRewriter(_filter(), postcopy_page_size=bool(flags & 1),
                        ignore_shared=bool(flags & 2))
    stream = data[2:]
    rng = random.Random(seed)
    pending = b""
    pos = 0
    while pos < len(stream):
        step = rng.choice((1, 3, 8, 9, 17, 64, 4096, 5000, len(stream)))
        pending += stream[pos:pos + step]
        pos += step
        while True:
            before = rw.counters["bytes_in"]
            out, consumed, status = rw.feed(pending)
            if not 0 <= consumed <= len(pending) or len(out) > consumed + 256:
                raise AssertionError(f"feed broke its bounds: {consumed=} {len(out)=}")
            if rw.counters["bytes_in"] != before + consumed:
                raise AssertionError("bytes_in does not count what was consumed")
            if status not in (pc.NEED_MORE, pc.EOS, pc.UNSUPPORTED, pc.MALFORMED):
                raise AssertionError(f"unknown status {status}")
            pending = pending[consumed:]
            if status in (pc.UNSUPPORTED, pc.MALFORMED):
                if not rw.last_error:
                    raise AssertionError("no reason given")
                return
            if status == pc.NEED_MORE or not pending:
                break


def multifd_target(data: bytes) -> None:
    """Filter.filter_multifd on a packet built from data (header fields often made valid)."""
    if len(data) < 4:
        return
    mode, alloc = data[0], data[1] % 8
    body = bytearray(data[4:])
    pkt_len = 320 + 8 * alloc
    if len(body) < pkt_len and mode & 1:
        body += bytes(pkt_len - len(body))
    pkt, payload = bytearray(body[:pkt_len]), bytes(body[pkt_len:])
    if mode & 2 and len(pkt) == pkt_len:  # a plausible header: magic, version, pages_alloc
        struct.pack_into(">III", pkt, 0, 0x11223344, 1, struct.unpack_from(">I", pkt, 8)[0] & 1)
        struct.pack_into(">I", pkt, 12, alloc)
        normal = data[2] % (alloc + 1)
        struct.pack_into(">I", pkt, 16, normal)
        payload = (payload * (normal * PAGE // max(len(payload), 1) + 1))[:normal * PAGE]
        if mode & 4:
            name = _BLOCKS[data[3] & 1][0]
            pkt[64:320] = name.ljust(256, b"\x00")
            for i in range(normal):  # offsets mostly inside the block
                off = struct.unpack_from(">Q", pkt, 320 + 8 * i)[0]
                if mode & 8:
                    off = (off % (64 * PAGE)) & ~(PAGE - 1)
                struct.pack_into(">Q", pkt, 320 + 8 * i, off)
    filt = _filter()
    for _ in range(2):  # the second pass sees the tags of the first
        try:
            new, kept_payload, kept, dropped, unchanged = filt.filter_multifd(bytes(pkt),
                                                                              payload)
        except pc.UnsupportedStream:
            return
        if len(new) != len(pkt) or len(kept_payload) != kept * PAGE:
            raise AssertionError("rewritten packet has the wrong size")
        if kept + dropped != struct.unpack_from(">I", pkt, 16)[0]:
            raise AssertionError("kept + dropped != normal_pages")
        if unchanged != dropped:
            raise AssertionError("a dropping filter dropped other pages than the unchanged")


TARGETS: dict[str, Callable[[bytes], None]] = {
    "rewriter": rewriter_target,
    "multifd": multifd_target,
}


def _seeds() -> list[bytes]:
    """Small valid inputs the random driver mutates."""
    ram = b"\x06pc.ram"
    stream = struct.pack(">Q", 66 * PAGE | 0x04) + ram + struct.pack(">Q", 64 * PAGE)
    stream += b"\x03rom" + struct.pack(">Q", 2 * PAGE) + struct.pack(">Q", 0x10)
    stream += struct.pack(">Q", PAGE | 0x08) + ram + bytes([5]) * PAGE
    stream += struct.pack(">Q", 0x22) + b"\x00"
    stream += struct.pack(">Q", 0x60) + b"\x01\x00\x02\x00\x01"
    stream += struct.pack(">Q", 0x120) + b"\x00\x00\x00\x03abc" + struct.pack(">Q", 0x10)
    multifd = bytes([14, 2, 2, 0]) + bytes(320) + struct.pack(">QQ", PAGE, 0) + b"\x07" * PAGE
    return [b"\x00\x01" + stream, b"\x00\x07" + stream + stream[:-3], multifd]


def random_driver(target: Callable[[bytes], None], runs: int, seed: int = 0) -> int:
    """Calls target on runs inputs: random bytes and mutated seeds. Returns the run count."""
    rng = random.Random(seed)
    seeds = _seeds()
    for _ in range(runs):
        if rng.random() < 0.3:
            data = rng.randbytes(rng.choice((4, 16, 64, 400, 5000)))
        else:
            data = bytearray(rng.choice(seeds))
            for _ in range(rng.randint(1, 8)):
                i = rng.randrange(len(data))
                op = rng.random()
                if op < 0.6:
                    data[i] = rng.randrange(256)
                elif op < 0.8:
                    del data[i:i + rng.randint(1, 64)]
                else:
                    data[i:i] = rng.randbytes(rng.randint(1, 16))
            data = bytes(data)
        target(data)
    return runs


@dataclass
class FuzzRun:
    """One target's run: executions, crashes and how it was driven."""

    target: str
    driver: str
    executions: int = 0
    crashes: int = 0
    seconds: float = 0.0
    detail: str = ""
    extra: dict[str, object] = field(default_factory=dict)


def _has_atheris() -> bool:
    try:
        import atheris  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def run_fuzz(say: Callable[[str], None], runs: int = 1_000_000) -> list[FuzzRun]:
    """Runs every target (atheris in a subprocess when installed, else the random driver)."""
    results = []
    for name, target in TARGETS.items():
        start = time.monotonic()
        if _has_atheris():
            say(f"fuzzing {name} with atheris, {runs} runs")
            corpus = tempfile.mkdtemp(prefix=f"perfplus-fuzz-{name}-")
            try:
                _write_seeds(corpus)
                proc = subprocess.run(
                    [sys.executable, "-m", "perfplus_agent.bench.fuzz_targets", name,
                     f"-runs={runs}", "-max_len=20000", "-rss_limit_mb=4096",
                     f"-artifact_prefix={tempfile.gettempdir()}/perfplus-fuzz-{name}-", corpus],
                    capture_output=True, text=True, check=False)
            finally:
                shutil.rmtree(corpus, ignore_errors=True)
            done = re.findall(r"Done (\d+) runs", proc.stderr)
            run = FuzzRun(name, "atheris", int(done[-1]) if done else 0,
                          0 if proc.returncode == 0 else 1)
            if proc.returncode != 0:
                run.detail = proc.stderr[-2000:]
        else:
            say(f"atheris unavailable: {name} with the random driver, {runs} runs")
            run = FuzzRun(name, "random")
            try:
                run.executions = random_driver(target, runs)
            except Exception as exc:  # a crash is the finding to report
                run.crashes, run.detail = 1, repr(exc)
        run.seconds = round(time.monotonic() - start, 1)
        results.append(run)
    return results


def _write_seeds(directory: str) -> None:
    for i, seed in enumerate(_seeds()):
        with open(os.path.join(directory, f"seed{i}"), "wb") as f:
            f.write(seed)


def _main(argv: list[str]) -> None:
    """``python -m perfplus_agent.bench.fuzz_targets NAME [libFuzzer flags] [CORPUS_DIR]``."""
    import atheris  # noqa: PLC0415 - only in the fuzzing subprocess

    # Python-side coverage of the target (statuses, error paths) guides libFuzzer; a seed
    # corpus (run_fuzz passes one) starts it from valid streams and packets.
    target = atheris.instrument_func(TARGETS[argv[1]])
    atheris.Setup([argv[0], *argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--random":
        n = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
        print(json.dumps({k: random_driver(t, n) for k, t in TARGETS.items()}))
    else:
        _main(sys.argv)
