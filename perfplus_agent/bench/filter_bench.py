"""``perfplus bench filter``: Perf+ filter throughput per core, against memcpy.

Each algorithm hashes and filters 4 KiB pages through ``Filter.filter`` on one thread:
"changed" passes store a new tag per page (every slot empty), "unchanged" passes compare
against the stored tag and drop. Two working sets: hot (a 128 KiB set in batches of 32
pages, cache resident, what a proxy sees right after ``recv()``) and large (1 GiB walked in
batches of 128 pages, memory bound). ``copy_pages`` (memcpy, GIL released) of the same
pages into a batch buffer is the reference measured in the same run.
"""

from __future__ import annotations

import os
import statistics
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from perfplus_agent import perfplus_c as pc

__all__ = ["TARGET_GBPS", "FilterBench", "format_table", "run_filter_bench"]

PAGE = pc.PAGE_SIZE
TARGET_GBPS = 4.0  # keyed default algorithm, per core, large set
HOT_BYTES = 128 * 1024
HOT_BATCH = 32
LARGE_BATCH = 128


@dataclass
class FilterBench:
    """GB/s samples per figure ("<algorithm>/<set>/<changed|unchanged>", "memcpy/<set>")."""

    hot_bytes: int = HOT_BYTES
    large_bytes: int = 0
    hot_batch_pages: int = HOT_BATCH
    large_batch_pages: int = LARGE_BATCH
    highwayhash_target: str = pc.HIGHWAYHASH_TARGET
    samples: dict[str, list[float]] = field(default_factory=dict)

    def summary(self) -> dict[str, dict[str, float]]:
        """Median and max GB/s per figure; the default algorithm's large set has a target."""
        out: dict[str, dict[str, float]] = {}
        for key, values in self.samples.items():
            s = {"min": min(values), "median": statistics.median(values), "max": max(values),
                 "runs": len(values)}
            if key.startswith(f"{pc.DEFAULT_ALGORITHM}/large/"):
                s["target_min"] = TARGET_GBPS
                s["met"] = s["median"] >= TARGET_GBPS
            out[key] = s
        return out


def _offsets(first_page: int, n: int) -> bytes:
    return struct.pack(f">{n}Q", *((first_page + i) * PAGE for i in range(n)))


def _timed_pass(data: memoryview, batch: int, call: Callable[[int, memoryview], None],
                budget_s: float) -> float:
    """Runs call(first_page, pages) over data in batches (repeating a small set until about
    budget_s has passed); returns GB/s."""
    npages = len(data) // PAGE
    done = 0
    start = time.perf_counter()
    while True:
        for first in range(0, npages, batch):
            call(first, data[first * PAGE:(first + batch) * PAGE])
        done += len(data)
        elapsed = time.perf_counter() - start
        if elapsed >= budget_s:
            return done / elapsed / 1e9


def _filter_gbps(alg: str, data: memoryview, batch: int, budget_s: float) -> tuple[float, float]:
    """(changed, unchanged) GB/s of Filter.filter over data."""
    filt = pc.Filter(alg, pc.new_key(alg))
    block = filt.add_block(b"pc.ram", len(data))
    npages = len(data) // PAGE
    offsets = [_offsets(first, min(batch, npages - first)) for first in range(0, npages, batch)]
    small = len(data) <= HOT_BYTES

    def changed(first: int, pages: memoryview) -> None:
        if small and first == 0:
            filt.invalidate_all()  # the hot set is walked many times: every pass is new
        filt.filter(block, offsets[first // batch], pages)

    def unchanged(first: int, pages: memoryview) -> None:
        filt.filter(block, offsets[first // batch], pages)

    # the large set is walked once per pass: a fresh table makes the pass "all changed"
    c = _timed_pass(data, batch, changed, budget_s if small else 0)
    u = _timed_pass(data, batch, unchanged, budget_s if small else 0)
    if not small and not filt.filter(block, offsets[0], data[:batch * PAGE]) == bytes(batch):
        raise AssertionError("unchanged pages were not dropped")
    return c, u


def _memcpy_gbps(data: memoryview, batch: int, budget_s: float) -> float:
    dst = bytearray(batch * PAGE)
    view = memoryview(dst)

    def copy(_first: int, pages: memoryview) -> None:
        pc.copy_pages(view[:len(pages)], pages)

    return _timed_pass(data, batch, copy, budget_s)


def run_filter_bench(say: Callable[[str], None], *, rounds: int = 3, large_mib: int = 1024,
                     algorithms: tuple[str, ...] = pc.ALGORITHMS,
                     hot_budget_s: float = 0.3) -> FilterBench:
    """Measures every algorithm and memcpy on the hot and the large set, ``rounds`` times."""
    result = FilterBench(large_bytes=large_mib * 1024 * 1024)
    hot = memoryview(os.urandom(HOT_BYTES))
    say(f"filling the {large_mib} MiB large set")
    chunk = os.urandom(1 << 20)
    large = memoryview(chunk * large_mib)
    for r in range(rounds):
        say(f"round {r + 1}/{rounds}")
        for name, data, batch in (("hot", hot, HOT_BATCH), ("large", large, LARGE_BATCH)):
            result.samples.setdefault(f"memcpy/{name}", []).append(
                _memcpy_gbps(data, batch, hot_budget_s if name == "hot" else 0))
            for alg in algorithms:
                c, u = _filter_gbps(alg, data, batch, hot_budget_s)
                result.samples.setdefault(f"{alg}/{name}/changed", []).append(c)
                result.samples.setdefault(f"{alg}/{name}/unchanged", []).append(u)
    return result


def format_table(result: FilterBench) -> str:
    """One line per figure: median and max GB/s per core, the target where there is one."""
    rows = [f"{'figure (GB/s per core)':32} {'median':>8} {'max':>8} {'target':>8}  met"]
    for key, s in result.summary().items():
        target = f">= {s['target_min']:g}" if "target_min" in s else ""
        met = ("yes" if s["met"] else "NO") if "met" in s else ""
        rows.append(f"{key:32} {s['median']:8.2f} {s['max']:8.2f} {target:>8}  {met}")
    return "\n".join(rows)
