"""A picture that moves every frame, for rate-control tests (a static or flat picture costs
an encoder next to nothing), and PSNR to compare decoded pictures with it."""

from __future__ import annotations

import numpy as np


def moving_yuv420p(width: int, height: int, index: int) -> np.ndarray:
    """Packed yuv420p planes of a pattern that moves every picture (waves and a sliding bar)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    luma = 128 + 50 * np.sin((x + 6 * index) / 11) + 40 * np.cos((y - 4 * index) / 17)
    bar = (x - 8 * index) % width < width // 8
    luma = np.where(bar, 235, luma)
    cy, cx = np.mgrid[0 : height // 2, 0 : width // 2].astype(np.float32)
    u = 128 + 60 * np.sin((cx + cy + 3 * index) / 23)
    v = 128 + 60 * np.cos((cx - cy - 2 * index) / 19)
    planes = np.concatenate([luma.ravel(), u.ravel(), v.ravel()]).clip(16, 240).astype(np.uint8)
    return planes.reshape(height * 3 // 2, width)


def psnr(decoded: np.ndarray, source: np.ndarray) -> float:
    """Peak signal-to-noise ratio (dB) of a decoded picture against its source."""
    error = np.mean((decoded.astype(np.float64) - source.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / max(error, 1e-9)))
