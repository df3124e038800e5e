"""``benchmarks.soak.analysis``: the pass/fail rules on made-up samples, and ``sampler`` on this
very process."""

from __future__ import annotations

import os

from benchmarks.soak.analysis import MIB, latency_per_minute, process_figures, verdict
from benchmarks.soak.sampler import Sample, read_process


def series(name: str, rss_mib_per_min: float, fds: list[int], threads: int = 6) -> list[Sample]:
    return [
        Sample(
            t=10.0 * k,
            process=name,
            pid=100,
            rss_bytes=int((100 + rss_mib_per_min * k / 6) * MIB),
            fds=fd,
            threads=threads,
        )
        for k, fd in enumerate(fds)
    ]


def test_flat_processes_pass_and_a_leak_fails() -> None:
    flat = series("parent", 0.0, [30] * 30)
    leaking = series("infer", 3.0, [20] * 30)
    figures = process_figures(flat + leaking, warmup_s=60.0, streams_end_s=1e9)
    assert figures["parent"]["rss_ok"] and figures["parent"]["fds_ok"]
    assert not figures["infer"]["rss_ok"]
    assert abs(figures["infer"]["rss_growth_mib_per_min"] - 3.0) < 0.01


def test_fds_that_pile_up_fail_and_samples_after_the_stop_are_kept_apart() -> None:
    growing = series("egress", 0.0, list(range(20, 50)))
    stop = Sample(t=400.0, process="egress", pid=100, rss_bytes=50 * MIB, fds=10, threads=2)
    figures = process_figures([*growing, stop], warmup_s=60.0, streams_end_s=300.0)
    assert not figures["egress"]["fds_ok"]
    assert figures["egress"]["after_stop"] == {"rss_mib": 50.0, "fds": 10, "threads": 2}


def test_latency_per_minute_and_the_verdict() -> None:
    times = [float(t) for t in range(600)]
    steady = [(times, [40.0 + (t % 3) for t in range(600)])]
    per_minute = latency_per_minute(steady)
    assert len(per_minute) == 10 and all(v == 41.0 for _, v in per_minute)
    processes = process_figures(series("parent", 0.0, [30] * 30), 60.0, 1e9)
    assert verdict(processes, per_minute, 0.0005, 60.0)["passed"]
    drifting = latency_per_minute([(times, [40.0 + t / 20.0 for t in range(600)])])  # 3 ms/min
    result = verdict(processes, drifting, 0.0, 60.0)
    assert not result["checks"]["latency_drift"]["passed"]
    assert not verdict(processes, per_minute, 0.002, 60.0)["checks"]["drops"]["passed"]


def test_read_process_of_this_process() -> None:
    figures = read_process(os.getpid())
    assert figures is not None
    rss, fds, threads = figures
    assert rss > MIB and fds >= 3 and threads >= 1
    assert read_process(2**22 + 7) is None
