"""Latency percentile accumulators and the pipeline's stage arithmetic over frame stamps."""

from __future__ import annotations

import random

import pytest

from ipc.frame import Stage, new_stamps
from ipc.stats import (
    BUCKETS,
    PIPELINE_STAGES,
    LatencyHistogram,
    StageLatencies,
    bucket_bounds,
    bucket_of,
    pipeline_latencies,
)


def test_every_value_falls_in_its_bucket_and_buckets_are_contiguous() -> None:
    previous_high = 0
    for index in range(BUCKETS - 1):
        low, high = bucket_bounds(index)
        assert low == previous_high and high > low
        previous_high = high
        for value in {low, (low + high) // 2, high - 1}:
            assert bucket_of(value) == index
    assert bucket_of(1 << 50) == BUCKETS - 1
    assert bucket_of(-5) == 0


def test_bucket_width_is_at_most_an_eighth_of_an_octave() -> None:
    for index in range(8, BUCKETS - 1):
        low, high = bucket_bounds(index)
        assert (high - low) / low <= 1 / 8


def test_percentiles_match_exact_ones_within_bucket_resolution() -> None:
    rng = random.Random(7)
    values = [int(rng.lognormvariate(15, 0.8)) for _ in range(20_000)]  # ~3 ms median
    histogram = LatencyHistogram()
    for value in values:
        histogram.record(value)
    ordered = sorted(values)
    for q in (50, 95, 99):
        exact = ordered[max(0, -(-q * len(ordered) // 100) - 1)]
        assert histogram.percentile(q) == pytest.approx(exact, rel=0.07)
    assert histogram.count == len(values)
    assert histogram.min_ns == ordered[0] and histogram.max_ns == ordered[-1]
    assert histogram.mean_ns == pytest.approx(sum(values) / len(values))


def test_summary_is_in_milliseconds_and_a_single_sample_reports_itself() -> None:
    histogram = LatencyHistogram()
    assert histogram.summary().count == 0 and histogram.percentile(50) == 0.0
    histogram.record(2_345_678)
    summary = histogram.summary()
    assert (summary.p50, summary.p95, summary.p99, summary.count) == (
        2.3457,
        2.3457,
        2.3457,
        1,
    )


def test_tail_percentiles_see_rare_slow_samples() -> None:
    histogram = LatencyHistogram()
    for _ in range(980):
        histogram.record(1_000_000)
    for _ in range(20):
        histogram.record(50_000_000)
    assert histogram.percentile(50) == pytest.approx(1e6, rel=0.07)
    assert histogram.percentile(95) == pytest.approx(1e6, rel=0.07)
    assert histogram.percentile(99) == pytest.approx(50e6, rel=0.07)


def test_reset_and_merge() -> None:
    a, b = LatencyHistogram(), LatencyHistogram()
    for value in (1_000, 2_000, 3_000):
        a.record(value)
    b.record(10)
    a.merge(b)
    assert (a.count, a.min_ns, a.max_ns, a.total_ns) == (4, 10, 3_000, 6_010)
    a.reset()
    assert a.count == 0 and a.percentile(99) == 0.0
    a.record(500)
    assert a.min_ns == 500 and a.percentile(50) == 500


def test_stage_latencies_report_only_stages_with_samples() -> None:
    stages = StageLatencies()
    stages.record_between("decode", 100, 1_100)
    stages.record_between("encode", 0, 5_000)  # start not stamped: ignored
    stages.record("publish", 2_000_000)
    summary = stages.summary()
    assert set(summary) == {"decode", "publish"}
    assert summary["publish"].p50 == 2.0 and summary["decode"].count == 1
    stages.reset()
    assert stages.summary() == {}


def test_pipeline_latencies_from_a_fully_stamped_frame() -> None:
    stamps = new_stamps()
    for offset, stage in enumerate(Stage):
        stamps[stage] = 1_000_000_000 + offset * 1_000 * (offset + 1)
    found = dict(pipeline_latencies(stamps))
    assert set(found) == {name for name, _, _ in PIPELINE_STAGES}
    assert found["decode"] == stamps[Stage.DECODED] - stamps[Stage.INGEST_FIRST_BYTE]
    assert found["ingest_to_infer"] == stamps[Stage.INFER_READ] - stamps[Stage.INGEST_WRITTEN]
    assert found["infer_to_egress"] == stamps[Stage.EGRESS_READ] - stamps[Stage.INFER_WRITTEN]
    assert found["end_to_end"] == stamps[Stage.PUBLISHED] - stamps[Stage.INGEST_FIRST_BYTE]


def test_pipeline_latencies_fall_back_and_skip_unstamped_stages() -> None:
    stamps = new_stamps()
    stamps[Stage.INGEST_WRITTEN] = 10
    stamps[Stage.INFER_START] = 40  # no INFER_READ: the ring wait ends at INFER_START
    stamps[Stage.INFER_END] = 90
    stamps[Stage.EGRESS_READ] = 100  # no INFER_WRITTEN: the wait starts at INFER_END
    found = dict(pipeline_latencies(stamps))
    assert found == {"ingest_to_infer": 30, "infer": 50, "infer_to_egress": 10}


def test_recording_a_frames_pipeline_fills_one_histogram_per_stamped_stage() -> None:
    stamps = new_stamps()
    stamps[Stage.INGEST_WRITTEN] = 10
    stamps[Stage.INFER_START] = 40
    stamps[Stage.INFER_END] = 90
    stamps[Stage.EGRESS_READ] = 100
    stages = StageLatencies()
    stages.record_pipeline(stamps)
    stages.record_pipeline(stamps.tolist())  # the same stamps as a list count the same
    summary = stages.summary()
    assert set(summary) == {"ingest_to_infer", "infer", "infer_to_egress"}
    assert summary["infer"].count == 2 and summary["infer"].sum_ms == 100 / 1e6
