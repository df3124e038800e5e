"""Status-event figures: one latency for the whole path, only lost frames counted as dropped."""

from __future__ import annotations

from byoc.stream_events import StreamFigures, status_event
from ipc.messages import StageLatency, StreamStats


def stage(p50: float) -> StageLatency:
    return StageLatency(p50=p50, p95=p50 * 2, p99=p50 * 3, count=30)


def figures() -> StreamFigures:
    f = StreamFigures()
    f.update(
        StreamStats(
            stream_id="s",
            worker="ingest",
            fps_in=30.0,
            dropped={"decode_error": 1, "scaled": 30, "audio_unsupported": 50},
            stages={"decode": stage(0.5)},
        )
    )
    f.update(
        StreamStats(
            stream_id="s",
            worker="infer",
            dropped={"infer_behind": 2, "workflow_error": 4},
            stages={"infer": stage(3.0)},
        )
    )
    f.update(
        StreamStats(
            stream_id="s",
            worker="egress",
            fps_out=29.0,
            dropped={"ring_overwrite": 3, "audio_overflow": 7},
            stages={"decode": stage(0.6), "infer": stage(3.1), "end_to_end": stage(9.5)},
        )
    )
    return f


def test_latency_is_egress_end_to_end_not_a_sum_of_overlapping_stages() -> None:
    assert figures().latency_ms == 9.5


def test_only_lost_video_frames_count_as_dropped() -> None:
    assert figures().frames_dropped == 1 + 2 + 3


def test_the_event_carries_each_stage_once_and_drops_by_reason() -> None:
    event = status_event(
        stream_id="s", state="processing", params={}, figures=figures(), restarts=0, last_error=None
    )["event"]
    assert event["stages"]["decode"]["p50"] == 0.6  # egress's view wins
    assert event["stages"]["infer"]["p50"] == 3.1
    assert event["dropped"]["ingest.scaled"] == 30
    assert (event["fps_in"], event["fps_out"], event["frames_dropped"]) == (30.0, 29.0, 6)
