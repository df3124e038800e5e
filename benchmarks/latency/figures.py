"""Figures from per-frame samples: percentiles, drift slope, drop rates, counter unwrapping."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from benchmarks.media.clip import COUNTER_MODULO

PERCENTILES = (50, 95, 99)


def percentiles(values: Sequence[float] | np.ndarray) -> dict[str, float | int]:
    """``{"n", "p50", "p95", "p99", "max"}`` of ``values`` (ms in, ms out); only ``n`` if empty."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return {"n": 0}
    out: dict[str, float | int] = {"n": int(arr.size)}
    for q in PERCENTILES:
        out[f"p{q}"] = round(float(np.percentile(arr, q)), 3)
    out["max"] = round(float(arr.max()), 3)
    return out


def slope_per_minute(
    times_s: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray
) -> float | None:
    """Least-squares slope of ``values`` over ``times_s`` (seconds), per minute; ``None`` when
    fewer than 10 samples or no time spread."""
    t = np.asarray(times_s, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if t.size < 10 or float(t.max() - t.min()) <= 0.0:
        return None
    slope = float(np.polyfit(t, v, 1)[0])
    return round(slope * 60.0, 3)


def unwrap_counter(value: int, expected_index: float, period: int = COUNTER_MODULO) -> int:
    """The frame index whose counter reads ``value`` (modulo ``period``: 4096, or a looping
    clip's length) closest to ``expected_index`` (the index the clock suggests; latency must
    stay below half the period)."""
    turns = round((expected_index - value) / period)
    return int(value + max(turns, 0) * period)


def drop_rate(sent: int, dropped: int) -> float:
    """Dropped frames as a fraction of frames sent (0.0 when nothing was sent)."""
    return dropped / sent if sent > 0 else 0.0


def ratio(ours: float | None, baseline: float | None) -> float | None:
    """``ours / baseline`` rounded, or ``None`` when either is missing or the baseline is 0."""
    if ours is None or baseline is None or baseline == 0 or math.isnan(baseline):
        return None
    return round(ours / baseline, 3)


def max_streams_without_drops(
    rates_by_streams: dict[int, float], threshold: float
) -> tuple[int | None, int | None]:
    """From drop rates measured at several stream counts: the largest count below the first one
    whose rate exceeds ``threshold`` (``None`` if even the smallest count dropped), and that
    first dropping count (``None`` if no count dropped)."""
    best: int | None = None
    for streams in sorted(rates_by_streams):
        if rates_by_streams[streams] > threshold:
            return best, streams
        best = streams
    return best, None


def binned_median(
    streams: Sequence[tuple[Sequence[float], Sequence[float]]], bin_s: float
) -> list[tuple[float, float]]:
    """Median of ``(t, value)`` samples from several streams per ``bin_s`` bin, at bin centres."""
    bins: dict[int, list[float]] = defaultdict(list)
    for times, values in streams:
        for t, v in zip(times, values, strict=True):
            bins[int(t // bin_s)].append(v)
    return [
        (round((b + 0.5) * bin_s, 3), round(float(np.median(vs)), 3))
        for b, vs in sorted(bins.items())
        if vs
    ]
