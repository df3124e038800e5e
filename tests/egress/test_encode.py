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
from tests.egress.moving_pictures import moving_yuv420p, psnr

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


BIT_RATE = 1_000_000
SIDE = 512


def _encode_at_bit_rate(times: list[Fraction]) -> tuple[list[av.Packet], list[float]]:
    """Encode the moving pattern at ``times`` (seconds) with ``bit_rate`` set and no declared
    frame rate; returns the packets and each decoded picture's PSNR against its source."""
    encoder = VideoEncoder(SIDE, SIDE, bit_rate=BIT_RATE)
    decoder = av.CodecContext.create("h264", "r")
    packets: list[av.Packet] = []
    psnrs: list[float] = []
    sources: list[np.ndarray] = []
    for index, time in enumerate(times):
        source = moving_yuv420p(SIDE, SIDE, index)
        sources.append(source)
        out = encoder.encode(source, round(time * 90_000), force_keyframe=index == 0)
        out += encoder.flush() if index == len(times) - 1 else []
        for packet in out:
            packets.append(packet)
            for frame in decoder.decode(packet):  # type: ignore[attr-defined]
                decoded = frame.to_ndarray()
                psnrs.append(psnr(decoded, sources[len(psnrs)]))
    return packets, psnrs


def _bits_per_second(packets: list[av.Packet], seconds: Fraction) -> float:
    return sum(p.size for p in packets) * 8 / float(seconds)


@pytest.mark.parametrize("fps", [30, 60])
def test_bit_rate_mode_hits_the_target_at_the_inputs_frame_rate(fps: int) -> None:
    seconds = 4
    times = [Fraction(i, fps) for i in range(fps * seconds)]
    packets, psnrs = _encode_at_bit_rate(times)
    assert [p.pts for p in packets] == [round(t * 90_000) for t in times]
    rate = _bits_per_second(packets, Fraction(seconds))
    # Once x264 took 90 kHz for the frame rate: a few kbit/s of grey pictures.
    assert 0.3 * BIT_RATE < rate < 3 * BIT_RATE, rate
    assert len(psnrs) == len(times)
    assert min(psnrs[fps:]) > 30, min(psnrs[fps:])  # past the first second's ramp-up


def test_bit_rate_mode_keeps_variable_frame_rate_timestamps() -> None:
    # 60 fps, then 30, then 20 ms/40 ms alternating: the timing is the timestamps alone.
    times = [Fraction(i, 60) for i in range(120)]
    times += [times[-1] + Fraction(i + 1, 30) for i in range(60)]
    times += [times[-1] + Fraction(20 * (i + 1) + 20 * ((i + 1) // 2), 1000) for i in range(60)]
    packets, psnrs = _encode_at_bit_rate(times)
    assert [p.pts for p in packets] == [round(t * 90_000) for t in times]
    rate = _bits_per_second(packets, times[-1] + Fraction(1, 30))
    assert 0.3 * BIT_RATE < rate < 3 * BIT_RATE, rate
    assert min(psnrs[60:]) > 30, min(psnrs[60:])
    # The SPS declares 90 kHz timing as before, never the nominal 30 fps of the budget.
    decoder = av.CodecContext.create("h264", "r")
    decoder.decode(packets[0])  # type: ignore[attr-defined]
    assert decoder.framerate == Fraction(90_000)
