"""H.264 levels and profile-level-ids for the WHEP answer, and reading them back from an SPS."""

from __future__ import annotations

import pytest

from benchmarks.media.clip import ClipSpec, video_frame
from egress.encode import VideoEncoder
from egress.whep.h264 import (
    constrained_baseline_id,
    level_for,
    nal_type,
    nal_units,
    sps_profile_level_id,
    x264_level,
)


@pytest.mark.parametrize(
    ("width", "height", "fps", "level"),
    [
        (512, 512, 30, 30),  # 1024 macroblocks, 30,720 a second: level 3
        (512, 512, 60, 31),
        (1280, 720, 30, 31),
        (1280, 720, 60, 32),
        (1920, 1080, 30, 40),
        (1920, 1080, 60, 42),
        (176, 144, 15, 10),
    ],
)
def test_the_level_is_the_lowest_that_holds_the_picture(
    width: int, height: int, fps: int, level: int
) -> None:
    assert level_for(width, height, fps=fps) == level


def test_the_bitrate_can_raise_the_level() -> None:
    assert level_for(320, 240, fps=30, bit_rate=3_000_000) == 21
    assert level_for(320, 240, fps=30) == 13


def test_profile_level_id_names_constrained_baseline() -> None:
    assert constrained_baseline_id(31) == "42c01f"
    assert x264_level(31) == "3.1" and x264_level(40) == "4"
    with pytest.raises(ValueError):
        x264_level(33)


def test_libx264_writes_the_profile_level_id_we_answer_with() -> None:
    """An SPS from libx264 itself (not ours): Baseline at a forced level reads back as the id the
    answer names."""
    spec = ClipSpec(width=640, height=360, fps=30)
    level = level_for(spec.width, spec.height)
    encoder = VideoEncoder(
        spec.width, spec.height, profile="baseline", level=x264_level(level), frame_rate=30
    )
    [packet] = encoder.encode(video_frame(spec, 0), 0)
    data = bytes(packet)
    assert [nal_type(n) for n in nal_units(data) if nal_type(n) != 6] == [7, 8, 5]
    assert sps_profile_level_id(data) == constrained_baseline_id(level)


def test_nal_units_split_three_and_four_byte_start_codes() -> None:
    stream = b"\x00\x00\x00\x01\x67\xaa\x00\x00\x01\x68\xbb\x00\x00\x00\x01\x65\xcc\xdd"
    assert list(nal_units(stream)) == [b"\x67\xaa", b"\x68\xbb", b"\x65\xcc\xdd"]
    assert sps_profile_level_id(b"\x00\x00\x01\x65\x88") is None
