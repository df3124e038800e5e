"""Flat colour patches and the float reference conversion (``infer.tensors.PixelConverter``),
for checking FFmpeg's swscale conversions in ingest and egress against it."""

from __future__ import annotations

import numpy as np
import torch

from infer.tensors import PixelConverter
from ipc.colour import MATRIX_BT709, MATRIX_SMPTE170M, RANGE_FULL, RANGE_LIMITED, Colour

PATCH = 16
"""Side of a patch; a patch's interior keeps clear of its edges, where swscale's chroma
filtering and ours mix neighbouring patches differently."""
MARGIN = 4
COLOURS = (
    (0, 0, 0),
    (255, 255, 255),
    (128, 128, 128),
    (200, 60, 30),
    (30, 200, 60),
    (60, 30, 200),
    (235, 200, 20),
    (20, 120, 220),
)
GRID = (4, 2)
"""Patches across and down: a 64x32 picture."""
WIDTH, HEIGHT = GRID[0] * PATCH, GRID[1] * PATCH
TOLERANCE = 2
"""Levels swscale may differ from the float reference by (the README states the bound)."""
COLOURS_UNDER_TEST = [
    Colour(matrix=matrix, range=rng)
    for matrix in (MATRIX_SMPTE170M, MATRIX_BT709)
    for rng in (RANGE_LIMITED, RANGE_FULL)
]


def colour_id(colour: Colour) -> str:
    matrix = "bt709" if colour.matrix == MATRIX_BT709 else "bt601"
    return f"{matrix}-{'full' if colour.full_range else 'limited'}"


def patches_rgb() -> np.ndarray:
    """``(HEIGHT, WIDTH, 3)`` uint8: one flat colour per patch."""
    out = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
    for index, rgb in enumerate(COLOURS):
        row, col = divmod(index, GRID[0])
        out[row * PATCH : (row + 1) * PATCH, col * PATCH : (col + 1) * PATCH] = rgb
    return out


def interiors(image: np.ndarray, patch: int = PATCH, margin: int = MARGIN) -> np.ndarray:
    """The pixels of every patch's interior (an image of ``patch``-sized patches), stacked."""
    rows, cols = image.shape[0] // patch, image.shape[1] // patch
    parts = [
        image[
            r * patch + margin : (r + 1) * patch - margin,
            c * patch + margin : (c + 1) * patch - margin,
        ]
        for r in range(rows)
        for c in range(cols)
    ]
    return np.stack(parts).astype(np.int16)


def reference_yuv420p(rgb: np.ndarray, colour: Colour) -> np.ndarray:
    """Packed yuv420p ``(h * 3 // 2, w)`` of ``rgb``, by the float reference."""
    height, width = rgb.shape[:2]
    converter = PixelConverter(width, height, "yuv420p", colour=colour)
    images = torch.from_numpy(rgb).float().div(255.0).unsqueeze(0)
    return converter.to_frames(images)[0].reshape(height * 3 // 2, width)


def reference_rgb(yuv: np.ndarray, width: int, height: int, colour: Colour) -> np.ndarray:
    """``(h, w, 3)`` uint8 of packed yuv420p, by the float reference."""
    converter = PixelConverter(width, height, "yuv420p", colour=colour)
    images = converter.to_images([yuv])
    return images[0].mul(255.0).add(0.5).clamp(0, 255).to(torch.uint8).numpy()


def yuv_planes(packed: np.ndarray, width: int, height: int) -> tuple[np.ndarray, ...]:
    """Y, U and V of a packed yuv420p picture of even sides."""
    chroma = packed[height:].reshape(2, height // 2, width // 2)
    return packed[:height], chroma[0], chroma[1]
