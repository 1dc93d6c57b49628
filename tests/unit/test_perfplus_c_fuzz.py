"""The fuzz targets of the Perf+ C core, driven by plain random inputs (no atheris needed)."""

import pytest

from perfplus_agent import perfplus_c as pc
from perfplus_agent.bench import fuzz_targets


@pytest.mark.parametrize("name", sorted(fuzz_targets.TARGETS))
def test_target_survives_random_inputs(name):
    assert fuzz_targets.random_driver(fuzz_targets.TARGETS[name], 3000, seed=1) == 3000


def test_seeds_reach_the_filter():
    # the seed stream is valid: it must get through MEM_SIZE, a page and EOS records
    seed = fuzz_targets._seeds()[0]
    rw = pc.RamRewriter(fuzz_targets._filter())
    data = seed[2:]
    while data:
        _, consumed, status = rw.feed(data)
        assert status == pc.EOS, rw.last_error
        data = data[consumed:]
    c = rw.counters
    assert (c["pages_seen"], c["zero_pages"], c["xbzrle_pages"], c["compressed_pages"]) == (
        1, 1, 1, 1)
