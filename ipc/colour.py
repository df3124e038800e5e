"""Colour description of a picture (matrix, range, primaries, transfer), carried in the frame
header's flag bits 16-31 so both ends of a ring can honour it.

Values are the ITU-T H.273 / FFmpeg codes a decoder reports and an encoder writes into the
stream's VUI: matrix 1 BT.709, 5 BT.470BG and 6 SMPTE 170M (both BT.601), 9 BT.2020; range 1
limited ("MPEG"), 2 full ("JPEG"); 2 (0 for range) means unspecified. Layout: matrix bits 16-19,
range 20-21, primaries 22-26, transfer 27-31.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

UNSPECIFIED = 2
RANGE_UNSPECIFIED = 0
RANGE_LIMITED = 1
RANGE_FULL = 2

MATRIX_BT709 = 1
MATRIX_BT470BG = 5
MATRIX_SMPTE170M = 6
MATRIX_BT2020 = 9
BT601_MATRICES = (MATRIX_BT470BG, MATRIX_SMPTE170M)

_FIELDS = (("matrix", 16, 4), ("range", 20, 2), ("primaries", 22, 5), ("transfer", 27, 5))
COLOUR_MASK = 0xFFFF_0000
HD_MIN_HEIGHT = 720
"""Pictures this tall or taller are HD: without a description they are taken as BT.709."""


@dataclass(frozen=True, slots=True)
class Colour:
    """How a YUV picture's samples map to colour (see the module docstring for the codes)."""

    matrix: int = UNSPECIFIED
    range: int = RANGE_UNSPECIFIED
    primaries: int = UNSPECIFIED
    transfer: int = UNSPECIFIED

    @property
    def specified(self) -> bool:
        """Whether the source said anything about its matrix."""
        return self.matrix not in (0, UNSPECIFIED)

    def to_flags(self) -> int:
        """The description as frame-header flag bits (16-31)."""
        bits = 0
        for name, shift, width in _FIELDS:
            value = getattr(self, name)
            if not 0 <= value < (1 << width):
                value = RANGE_UNSPECIFIED if name == "range" else UNSPECIFIED
            bits |= value << shift
        return bits

    @classmethod
    def from_flags(cls, flags: int) -> Colour:
        """The description stored in frame-header flags (all unspecified when none was).

        Read for every frame, and a stream's flags rarely change: the result is cached.
        """
        return _from_colour_bits(flags & COLOUR_MASK)

    def resolved(self, height: int) -> Colour:
        """The description to convert and tag with: what the source said, with the usual
        defaults filled in (BT.709 for HD, BT.601 / SMPTE 170M below; limited range)."""
        return _resolved(self, height >= HD_MIN_HEIGHT)

    def _resolve(self, hd: bool) -> Colour:
        matrix = self.matrix
        if matrix in (0, UNSPECIFIED) or matrix >= 15:
            matrix = MATRIX_BT709 if hd else MATRIX_SMPTE170M
        default_primaries = {MATRIX_BT709: 1, MATRIX_BT470BG: 5, MATRIX_BT2020: 9}.get(matrix, 6)
        default_transfer = {MATRIX_BT709: 1, MATRIX_BT2020: 1}.get(matrix, 6)
        return Colour(
            matrix=matrix,
            range=self.range if self.range in (RANGE_LIMITED, RANGE_FULL) else RANGE_LIMITED,
            primaries=default_primaries if self.primaries in (0, UNSPECIFIED) else self.primaries,
            transfer=default_transfer if self.transfer in (0, UNSPECIFIED) else self.transfer,
        )

    @property
    def luma_weights(self) -> tuple[float, float]:
        """``(Kr, Kb)`` of the matrix (BT.601 for anything not BT.709 or BT.2020)."""
        if self.matrix == MATRIX_BT709:
            return 0.2126, 0.0722
        if self.matrix == MATRIX_BT2020:
            return 0.2627, 0.0593
        return 0.299, 0.114

    @property
    def full_range(self) -> bool:
        return self.range == RANGE_FULL


@functools.lru_cache(maxsize=256)
def _from_colour_bits(bits: int) -> Colour:
    if not bits:
        return Colour()
    values = {name: (bits >> shift) & ((1 << width) - 1) for name, shift, width in _FIELDS}
    return Colour(**values)


@functools.lru_cache(maxsize=256)
def _resolved(colour: Colour, hd: bool) -> Colour:
    return colour._resolve(hd)
