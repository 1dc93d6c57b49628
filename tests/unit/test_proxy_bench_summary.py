"""``bench proxy``'s medians and ratios, on runs with known figures."""

import pytest

from perfplus_agent.bench.proxy_bench import ProxyBench, ProxyRun, format_table


def _run(size: int, variant: str, mib_s: float, *, cpu: float = 2.0, rss: float = 10.0,
         warmup: bool = False) -> ProxyRun:
    gib = size / 1024
    return ProxyRun(size, variant, "h1", "h2", ok=True, warmup=warmup,
                    qemu_bytes=int(gib * 2**30), time_s=gib * 1024 / mib_s,
                    throughput_mib_s=mib_s, src_daemon_cpu_s=1.5 * gib,
                    dst_daemon_cpu_s=0.8 * gib, src_daemon_rss_growth_mib=rss,
                    machine_cpu_s=cpu * gib, machine_busy_cores=1.5,
                    filter_table_bytes=int(gib * 4.25 * 2**20), memory_intact=True)


def test_ratios_are_medians_per_size_and_the_largest_size_is_the_headline():
    bench = ProxyBench((512, 4096), rounds=3)
    bench.runs.append(_run(512, "daemons", 50.0, rss=99.0, warmup=True))  # not measured
    for size, rss in ((512, 10.0), (4096, 17.0)):
        for mib_s in (600.0, 500.0, 700.0):
            bench.runs.append(_run(size, "direct", mib_s))
        for mib_s in (400.0, 300.0, 350.0):
            bench.runs.append(_run(size, "relay", mib_s, cpu=4.0))
            bench.runs.append(_run(size, "relay-unix", mib_s + 60, cpu=3.5))
        for mib_s in (280.0, 320.0, 300.0):
            bench.runs.append(_run(size, "daemons", mib_s, cpu=5.0, rss=rss))
    big = bench.by_size()[4096]
    assert (big["direct_mib_s"], big["relay_mib_s"], big["daemons_mib_s"]) == (600, 350, 300)
    assert big["throughput_ratio"] == pytest.approx(0.5)
    assert big["relay_ratio"] == pytest.approx(350 / 600, abs=1e-3)
    assert big["daemons_vs_relay"] == pytest.approx(300 / 350, abs=1e-3)
    assert big["src_daemon_cpu_s_per_gib"] == pytest.approx(1.5)
    assert big["daemons_machine_cpu_s_per_gib"] == pytest.approx(5.0)
    assert big["relay_machine_cpu_s_per_gib"] == pytest.approx(4.0)
    assert big["relay_unix_mib_s"] == 410
    assert big["relay_unix_ratio"] == pytest.approx(410 / 600, abs=1e-3)
    assert big["relay_unix_machine_cpu_s_per_gib"] == pytest.approx(3.5)
    summary = bench.summary()
    assert summary["throughput_ratio"] == pytest.approx(0.5)
    assert summary["throughput_ratio_met"] is False
    # RSS growth 10 MiB at 0.5 GiB, 17 MiB at 4 GiB: 2 MiB per GiB
    assert summary["daemon_rss_mib_per_gib"] == pytest.approx(2.0)
    assert summary["cold_rss_growth_mib"] == 99.0
    assert summary["filter_table_mib_per_gib"] == pytest.approx(4.25, abs=0.01)
    table = format_table(bench)
    assert "0.857" in table and "0.500" in table


def test_a_size_without_every_variant_is_left_out():
    bench = ProxyBench((512,), rounds=1)
    bench.runs += [_run(512, "direct", 600.0), _run(512, "daemons", 300.0)]
    assert bench.by_size() == {}
    assert "throughput_ratio" not in bench.summary()
