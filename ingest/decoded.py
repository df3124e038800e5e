"""Decoded media as the ingest hands it on."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

TS_CLOCK = 90_000
TS_TIME_BASE = Fraction(1, TS_CLOCK)


@dataclass(slots=True)
class DecodedVideo:
    """One decoded picture.

    ``pts`` is on the ingest timeline (90 kHz, ``time_base``): the stream's own timestamps,
    shifted after a discontinuity so that they keep increasing. ``source_pts`` is the value the
    stream carried. ``array`` holds the picture in the decoder's requested pixel format
    (``yuv420p``: packed planes of shape ``(height * 3 // 2, width)``; ``rgb24``:
    ``(height, width, 3)``), or is ``None`` when the caller asked for ``av.VideoFrame`` only.
    """

    frame: av.VideoFrame
    array: np.ndarray | None
    pixel_format: str
    width: int
    height: int
    pts: int
    source_pts: int | None
    time_base: Fraction
    keyframe: bool
    discontinuity: bool  # first picture after a timestamp jump
    segment: int  # input segment the picture's bytes came from
    received_ns: int  # monotonic ns when the last byte of its packet was parsed
    decoded_ns: int  # monotonic ns when the decoder returned it (and it was converted)


@dataclass(slots=True)
class DecodedAudio:
    """One decoded audio frame; timestamps as in :class:`DecodedVideo`."""

    frame: av.AudioFrame
    pts: int
    source_pts: int | None
    time_base: Fraction
    sample_rate: int
    channels: int
    samples: int
    discontinuity: bool
    segment: int
    received_ns: int
    decoded_ns: int
