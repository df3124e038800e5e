"""The H.264 and Opus encoders of egress, checked with FFmpeg's decoder."""

from __future__ import annotations

import itertools
from fractions import Fraction

import av
import numpy as np
import pytest

from benchmarks.media.clip import (
    ClipSpec,
    audio_frame,
    read_frame_counter,
    video_rgb24,
    video_yuv420p,
)
from egress.encode import OpusEncoder, VideoEncoder
from ingest.tsdemux import h264_is_idr

SPEC = ClipSpec(width=256, height=192)


def test_video_encoder_keeps_timestamps_and_makes_keyframes_only_when_asked() -> None:
    encoder = VideoEncoder(SPEC.width, SPEC.height)
    time_base = Fraction(1, 30)
    packets = []
    for i in range(20):
        out = encoder.encode(
            video_yuv420p(SPEC, i), 100 + i, time_base, force_keyframe=i in (0, 12)
        )
        assert len(out) == 1  # zerolatency: the packet of this frame, now
        packets += out
    assert [p.pts for p in packets] == [(100 + i) * 3000 for i in range(20)]
    assert all(p.dts == p.pts for p in packets)  # no B-frames
    assert [i for i, p in enumerate(packets) if p.is_keyframe] == [0, 12]
    assert [i for i, p in enumerate(packets) if h264_is_idr(bytes(p))] == [0, 12]
    assert encoder.encode(video_yuv420p(SPEC, 20), 119, time_base) == []  # pts went back
    assert encoder.stats.dropped_non_increasing_pts == 1


def test_video_encoder_takes_rgb24_and_video_frames() -> None:
    encoder = VideoEncoder(SPEC.width, SPEC.height)
    decoder = av.CodecContext.create("h264", "r")
    first = encoder.encode(video_rgb24(SPEC, 5), 0, pixel_format="rgb24", force_keyframe=True)
    frame = av.VideoFrame.from_ndarray(video_rgb24(SPEC, 6), format="rgb24")
    second = encoder.encode(frame, 3000)
    decoded = [f for p in first + second for f in decoder.decode(p)]  # type: ignore[attr-defined]
    assert [read_frame_counter(f) for f in decoded] == [5, 6]
    with pytest.raises(ValueError, match="encoder is 256x192"):
        encoder.encode(np.zeros((96 * 3 // 2, 128), np.uint8), 6000)


def test_opus_encoder_follows_a_gap_in_the_input() -> None:
    spec = ClipSpec(audio_rate=44_100)
    encoder = OpusEncoder(channels=1)
    packets = []
    for start in (0, 4410, 8820):
        packets += encoder.encode(audio_frame(spec, start, 4410))
    gap = 3 * 44_100
    for start in (gap, gap + 4410):
        packets += encoder.encode(audio_frame(spec, start, 4410))
    packets += encoder.flush()
    pts = [p.pts or 0 for p in packets]
    assert all(p.pts is not None for p in packets)
    steps = [b - a for a, b in itertools.pairwise(pts)]
    assert max(steps) > 2 * 48_000  # the gap is kept, not closed up
    assert sorted(set(steps) - {max(steps)}) == [960]
