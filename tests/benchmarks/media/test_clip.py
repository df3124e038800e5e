"""The test clip's frame counter: exact on raw pixels, readable after lossy coding, and never a
wrong number on a picture that does not carry it."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from benchmarks.media.clip import (
    COUNTER_MODULO,
    ClipSpec,
    audio_tone,
    expected_counter,
    read_counter,
    read_frame_counter,
    tone_phase_error,
    video_frame,
    video_rgb24,
    video_yuv420p,
)

INDICES = [0, 1, 2, 5, 170, 1365, 2730, 4094, 4095, 4096, 4097, 12345]


@pytest.mark.parametrize(("width", "height"), [(512, 512), (1280, 720), (128, 96)])
def test_counter_reads_back_from_raw_pixels(width: int, height: int) -> None:
    spec = ClipSpec(width=width, height=height)
    for index in INDICES:
        assert read_counter(video_yuv420p(spec, index), "yuv420p") == expected_counter(index)
        assert read_counter(video_rgb24(spec, index), "rgb24") == expected_counter(index)
    assert expected_counter(COUNTER_MODULO + 3) == 3


@pytest.mark.parametrize(("width", "height"), [(512, 512), (1280, 720)])
def test_counter_survives_heavy_compression(width: int, height: int) -> None:
    spec = ClipSpec(width=width, height=height)
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"  # type: ignore[attr-defined]
    encoder.time_base = Fraction(1, spec.fps)
    encoder.options = {"preset": "ultrafast", "tune": "zerolatency", "crf": "45"}
    decoder = av.CodecContext.create("h264", "r")
    indices = list(range(40))
    decoded = []
    for index in indices:
        frame = video_frame(spec, index)
        frame.pts = index
        for packet in encoder.encode(frame):  # type: ignore[attr-defined]
            decoded += decoder.decode(packet)  # type: ignore[attr-defined]
    for packet in encoder.encode(None):  # type: ignore[attr-defined]
        decoded += decoder.decode(packet)  # type: ignore[attr-defined]
    assert [read_frame_counter(f) for f in decoded] == indices


def test_pictures_without_a_counter_read_as_none() -> None:
    rng = np.random.default_rng(7)
    assert read_counter(np.full((512, 512), 128, np.uint8)) is None
    assert read_counter(rng.integers(0, 256, (512, 512), dtype=np.uint8)) is None
    spec = ClipSpec()
    smeared = video_yuv420p(spec, 1234)[:512].astype(np.int16)
    smeared[40:80] = smeared[0:40]  # check row no longer inverted
    assert read_counter(smeared.astype(np.uint8)) is None


def test_frames_move() -> None:
    spec = ClipSpec(width=256, height=192)
    a, b = video_yuv420p(spec, 10), video_yuv420p(spec, 11)
    below_counter = slice(100, 192)
    assert np.mean(a[below_counter] != b[below_counter]) > 0.5


def test_video_frame_timestamps() -> None:
    spec = ClipSpec(fps=30, start_pts=1000)
    frame = video_frame(spec, 3)
    assert frame.pts == 1000 + 9000
    assert frame.time_base == Fraction(1, 90_000)


def test_tone_is_continuous_and_its_phase_measurable() -> None:
    spec = ClipSpec(tone_hz=100.0)
    joined = np.concatenate([audio_tone(spec, 0, 480), audio_tone(spec, 480, 480)], axis=1)
    assert np.allclose(joined, audio_tone(spec, 0, 960))
    start = spec.start_pts / 90_000
    assert tone_phase_error(audio_tone(spec, 120, 960), spec, start + 120 / 48_000) < 1e-6
    # 120 samples = 2.5 ms = a quarter of the 10 ms period: the error is seen
    assert tone_phase_error(audio_tone(spec, 120, 960), spec, start) == pytest.approx(0.0025)


def test_invalid_geometry_is_rejected() -> None:
    with pytest.raises(ValueError):
        ClipSpec(width=511, height=512)
    with pytest.raises(ValueError):
        ClipSpec(width=64, height=64)
