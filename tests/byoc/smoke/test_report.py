"""Smoke figures: percentiles, latency matched by frame index, the verdict."""

from __future__ import annotations

from byoc.smoke.report import SmokeReport, build_report, missing_frames, percentile
from byoc.smoke.sink import SinkLog
from byoc.smoke.source import SourceLog


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([], 50) is None


def test_latency_is_output_decode_minus_input_capture_of_the_same_frame() -> None:
    source = SourceLog(captured_ns=[1_000_000_000 + i * 33_000_000 for i in range(10)])
    # Frames 2 and 5 came back 40 ms and 60 ms after they were made; 9 was never sent back.
    sink = SinkLog(
        decoded=3,
        frames={2: source.captured_ns[2] + 40_000_000, 5: source.captured_ns[5] + 60_000_000},
        unreadable=1,
        first_picture_ns=source.captured_ns[2] + 40_000_000,
        size=(256, 128),
    )
    report = build_report(SmokeReport("runner x", "s1"), source, sink, t0_ns=1_000_000_000)
    assert report.frames_in == 10
    assert report.frames_out == 3
    assert report.frames_identified == 2
    assert report.latency_ms["p50"] == 40.0
    assert report.latency_ms["max"] == 60.0
    assert report.first_frame_ms == 106.0
    assert report.output_size == "256x128"
    assert report.missing == {"start": 2, "middle": 2, "end": 4}
    assert report.ok
    assert any("result           OK" in line for line in report.lines())


def test_no_frames_back_is_a_failure_with_the_errors_shown() -> None:
    source = SourceLog(captured_ns=[1, 2, 3], error=None)
    sink = SinkLog(error="reading output failed: 404")
    report = build_report(SmokeReport("runner x", "s1"), source, sink, t0_ns=1)
    assert not report.ok
    assert report.to_json()["ok"] is False
    text = "\n".join(report.lines())
    assert "FAILED" in text and "404" in text


def test_missing_frames_by_where_they_were() -> None:
    assert missing_frames({0, 1, 2, 3}, 4) == {"start": 0, "middle": 0, "end": 0}
    assert missing_frames({3, 5, 6}, 10) == {"start": 3, "middle": 1, "end": 3}
    assert missing_frames(set(), 5) == {"start": 5, "middle": 0, "end": 0}
    assert missing_frames({-1, 12}, 5) == {"start": 5, "middle": 0, "end": 0}  # not ours
