"""The output's colour description: tags on pictures, the encoder's VUI, swscale arguments."""

from __future__ import annotations

import av

from ipc.colour import MATRIX_BT709, MATRIX_BT2020, RANGE_FULL, Colour


def tag_colour(frame: av.VideoFrame, colour: Colour) -> None:
    """Label ``frame`` with ``colour`` (metadata only: the samples are not touched)."""
    frame.colorspace = colour.matrix
    frame.color_range = colour.range
    frame.color_primaries = colour.primaries
    frame.color_trc = colour.transfer


def colour_of(frame: av.VideoFrame) -> Colour:
    """The colour description a picture is tagged with."""
    return Colour(
        matrix=int(frame.colorspace),
        range=int(frame.color_range),
        primaries=int(frame.color_primaries),
        transfer=int(frame.color_trc),
    )


def swscale_target(colour: Colour) -> dict[str, int]:
    """``reformat`` arguments that make swscale write YUV with ``colour``'s matrix and range."""
    matrix = colour.matrix if colour.matrix in (MATRIX_BT709, MATRIX_BT2020) else 5
    return {"dst_colorspace": matrix, "dst_color_range": 2 if colour.range == RANGE_FULL else 1}
