"""Pass/fail of a soak run against its targets.

- RSS growth <= 1 MiB/min per process after the first minute (least-squares slope of the
  samples after ``warmup_s``);
- open fds and threads flat: after the warm-up, no process ends with more than it had when the
  warm-up ended (median of the last three samples against the first three, a tolerance of
  ``flat_tolerance`` for a pool thread that happens to be busy at a sample);
- latency drift <= 1 ms/min: least-squares slope of the per-minute glass-to-glass p50;
- drops <= 0.1 % of the frames sent.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks.soak.sampler import Sample

MIB = 1024 * 1024
RSS_GROWTH_MIB_PER_MIN = 1.0
LATENCY_DRIFT_MS_PER_MIN = 1.0
DROP_RATE = 0.001


def _slope_per_minute(times: Sequence[float], values: Sequence[float]) -> float | None:
    if len(times) < 3 or max(times) - min(times) <= 0:
        return None
    return float(np.polyfit(np.asarray(times), np.asarray(values, dtype=float), 1)[0]) * 60.0


def process_figures(
    samples: list[Sample], warmup_s: float, streams_end_s: float, flat_tolerance: int = 1
) -> dict[str, dict[str, Any]]:
    """Per process: RSS at the start/end, its slope after the warm-up, fds and threads.

    Slopes and flatness cover the samples up to ``streams_end_s`` (while the streams ran);
    the samples after it are reported as ``after_stop`` (what stopping the streams released).
    """
    by_process: dict[str, list[Sample]] = defaultdict(list)
    stopped: dict[str, Sample] = {}
    for sample in samples:
        if sample.t <= streams_end_s:
            by_process[sample.process].append(sample)
        else:
            stopped[sample.process] = sample
    out: dict[str, dict[str, Any]] = {}
    for name, series in sorted(by_process.items()):
        after = [s for s in series if s.t >= warmup_s] or series
        slope = _slope_per_minute([s.t for s in after], [s.rss_bytes / MIB for s in after])
        head, tail = after[:3], after[-3:]
        fds_start = statistics.median(s.fds for s in head)
        fds_end = statistics.median(s.fds for s in tail)
        threads_start = statistics.median(s.threads for s in head)
        threads_end = statistics.median(s.threads for s in tail)
        out[name] = {
            "pids": sorted({s.pid for s in series}),
            "samples": len(series),
            "rss_mib_first": round(series[0].rss_bytes / MIB, 1),
            "rss_mib_after_warmup": round(after[0].rss_bytes / MIB, 1),
            "rss_mib_last": round(series[-1].rss_bytes / MIB, 1),
            "rss_growth_mib_per_min": None if slope is None else round(slope, 3),
            "fds": [int(fds_start), int(fds_end)],
            "threads": [int(threads_start), int(threads_end)],
            "rss_ok": slope is None or slope <= RSS_GROWTH_MIB_PER_MIN,
            "fds_ok": fds_end <= fds_start + flat_tolerance,
            "threads_ok": threads_end <= threads_start + flat_tolerance,
            "restarted": len({s.pid for s in series}) > 1,
        }
        last = stopped.get(name)
        if last is not None:
            out[name]["after_stop"] = {
                "rss_mib": round(last.rss_bytes / MIB, 1),
                "fds": last.fds,
                "threads": last.threads,
            }
    return out


def latency_per_minute(
    series: list[tuple[Sequence[float], Sequence[float]]], minute_s: float = 60.0
) -> list[tuple[float, float]]:
    """``[(minute start s, p50 ms), ...]`` over every stream's (t s, glass-to-glass ms)."""
    bins: dict[int, list[float]] = defaultdict(list)
    for times, values in series:
        for t, v in zip(times, values, strict=True):
            bins[int(t // minute_s)].append(float(v))
    return [
        (k * minute_s, round(float(np.percentile(v, 50)), 3)) for k, v in sorted(bins.items()) if v
    ]


def verdict(
    processes: dict[str, dict[str, Any]],
    per_minute: list[tuple[float, float]],
    drop_rate: float | None,
    warmup_s: float,
) -> dict[str, Any]:
    """Each target with its figure and whether it passed; ``passed`` for all of them."""
    measured = [(t, v) for t, v in per_minute if t >= warmup_s] or per_minute
    drift = _slope_per_minute([t for t, _ in measured], [v for _, v in measured])
    drift = None if drift is None else round(drift, 3)
    checks = {
        "rss_growth": {
            "target": f"<= {RSS_GROWTH_MIB_PER_MIN} MiB/min per process after the warm-up",
            "worst": max(
                (p["rss_growth_mib_per_min"] or 0.0 for p in processes.values()), default=None
            ),
            "passed": all(p["rss_ok"] for p in processes.values()),
        },
        "fds_flat": {
            "target": "no process ends with more open fds than after the warm-up",
            "passed": all(p["fds_ok"] for p in processes.values()),
        },
        "threads_flat": {
            "target": "no process ends with more threads than after the warm-up",
            "passed": all(p["threads_ok"] for p in processes.values()),
        },
        "latency_drift": {
            "target": f"<= {LATENCY_DRIFT_MS_PER_MIN} ms/min (slope of the p50 per bin "
            "after the warm-up)",
            "ms_per_min": drift,
            "passed": drift is not None and drift <= LATENCY_DRIFT_MS_PER_MIN,
        },
        "drops": {
            "target": f"<= {DROP_RATE:.1%} of the frames sent",
            "drop_rate": drop_rate,
            "passed": drop_rate is not None and drop_rate <= DROP_RATE,
        },
    }
    return {"checks": checks, "passed": all(c["passed"] for c in checks.values())}
