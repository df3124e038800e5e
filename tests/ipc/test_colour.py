"""Colour descriptions in frame flags."""

from __future__ import annotations

from ipc.colour import (
    COLOUR_MASK,
    MATRIX_BT709,
    MATRIX_SMPTE170M,
    RANGE_FULL,
    RANGE_LIMITED,
    Colour,
)
from ipc.frame import FrameFlag


def test_round_trip_through_flags_leaves_the_low_bits_alone() -> None:
    colour = Colour(matrix=MATRIX_BT709, range=RANGE_FULL, primaries=1, transfer=1)
    flags = colour.to_flags() | FrameFlag.KEYFRAME | FrameFlag.END_OF_STREAM
    assert flags < 2**32
    assert Colour.from_flags(flags) == colour
    assert flags & ~COLOUR_MASK == FrameFlag.KEYFRAME | FrameFlag.END_OF_STREAM


def test_no_colour_bits_reads_as_unspecified() -> None:
    assert Colour.from_flags(int(FrameFlag.KEYFRAME)) == Colour()
    assert not Colour().specified


def test_unspecified_resolves_by_size_and_specified_is_kept() -> None:
    hd = Colour().resolved(720)
    sd = Colour().resolved(480)
    assert (hd.matrix, hd.primaries, hd.range) == (MATRIX_BT709, 1, RANGE_LIMITED)
    assert (sd.matrix, sd.primaries, sd.range) == (MATRIX_SMPTE170M, 6, RANGE_LIMITED)
    tagged = Colour(matrix=MATRIX_SMPTE170M, range=RANGE_FULL, primaries=6, transfer=6)
    assert tagged.resolved(1080) == tagged


def test_out_of_range_codes_do_not_spill_into_other_fields() -> None:
    flags = Colour(matrix=99, range=7, primaries=1, transfer=1).to_flags()
    back = Colour.from_flags(flags)
    assert (back.primaries, back.transfer) == (1, 1)
    assert not back.specified


def test_reading_flags_again_gives_the_same_description() -> None:
    """Descriptions are cached per flag bits (read for every frame): equal input, equal output,
    and the frame's own low bits do not change the answer."""
    colour = Colour(matrix=MATRIX_BT709, range=RANGE_FULL, primaries=1, transfer=1)
    flags = colour.to_flags()
    assert Colour.from_flags(flags) == colour
    assert Colour.from_flags(flags | 0x3) is Colour.from_flags(flags)
    assert Colour.from_flags(0x1) == Colour()
    assert Colour().resolved(1080) is Colour().resolved(720)  # both HD
    assert Colour().resolved(480).matrix == MATRIX_SMPTE170M
