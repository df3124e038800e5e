"""Percentiles, drift slope, counter unwrapping and the stream-count comparison."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.latency.figures import (
    drop_rate,
    max_streams_without_drops,
    percentiles,
    ratio,
    slope_per_minute,
    unwrap_counter,
)
from benchmarks.media.clip import COUNTER_MODULO


def test_percentiles_of_known_values() -> None:
    figures = percentiles(list(range(1, 101)))
    assert figures["n"] == 100
    assert figures["p50"] == pytest.approx(50.5)
    assert figures["p99"] == pytest.approx(99.01)
    assert figures["max"] == 100
    assert percentiles([]) == {"n": 0}


def test_slope_finds_growth_in_ms_per_minute_and_none_without_data() -> None:
    t = np.arange(0, 30, 1 / 30)
    growing = 10.0 + 0.5 * t  # +0.5 ms per second
    assert slope_per_minute(t, growing) == pytest.approx(30.0, abs=1e-6)
    noisy_flat = 10.0 + np.random.default_rng(1).normal(0, 1, t.size)
    flat = slope_per_minute(t, noisy_flat)
    assert flat is not None and abs(flat) < 1.0
    assert slope_per_minute([1.0, 2.0], [1.0, 2.0]) is None
    assert slope_per_minute([5.0] * 20, list(range(20))) is None


@pytest.mark.parametrize(
    ("index", "expected"),
    [(0, 0.0), (17, 18.5), (4095, 4096.2), (4096, 4097.0), (4100, 4090.0), (12345, 12350.0)],
)
def test_unwrap_counter_recovers_the_index_from_the_clock(index: int, expected: float) -> None:
    assert unwrap_counter(index % COUNTER_MODULO, expected) == index


def test_unwrap_never_goes_negative() -> None:
    assert unwrap_counter(4090, 3.0) == 4090


def test_max_streams_without_drops() -> None:
    assert max_streams_without_drops({1: 0.0, 2: 0.0, 4: 0.2}, 0.01) == (2, 4)
    assert max_streams_without_drops({1: 0.0, 2: 0.005, 4: 0.0}, 0.01) == (4, None)
    assert max_streams_without_drops({1: 0.5, 2: 0.0}, 0.01) == (None, 1)


def test_ratio_and_drop_rate() -> None:
    assert ratio(10.0, 40.0) == 0.25
    assert ratio(10.0, 0.0) is None
    assert ratio(None, 3.0) is None
    assert drop_rate(100, 3) == 0.03
    assert drop_rate(0, 0) == 0.0
