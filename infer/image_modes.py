"""Pillow images of any mode a PNG or JPEG decodes to, as ``(H, W, 3)`` uint8 RGB.

Pillow keeps the file's own representation: bilevel ``1``, greyscale ``L``/``LA``, palette ``P``
(with a transparent index or alpha table), ``RGB``/``RGBA``, 16-bit greyscale ``I;16`` (and its
byte orders), 32-bit ``I``, and JPEG's ``CMYK`` (Adobe's inverted CMYK is undone by Pillow's
decoder). Alpha is dropped, as ComfyUI's ``LoadImage`` drops it from the image; deep greyscale
is scaled to 8 bits instead of being clipped.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")


def rgb_array(image: Image.Image) -> np.ndarray:
    """A writable ``(H, W, 3)`` uint8 RGB copy of ``image``, whatever its mode."""
    mode = image.mode
    if mode in _SIXTEEN_BIT or mode == "I":
        return _grey_to_rgb(_deep_grey_to_8bit(np.asarray(image), mode))
    if mode == "P":
        # A palette with transparency decodes through RGBA (Pillow warns and may lose the
        # palette's colours otherwise); the alpha is then dropped.
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("LA", "La", "PA"):
        image = image.convert("RGBA")
    return np.array(image.convert("RGB"), dtype=np.uint8)


def _deep_grey_to_8bit(values: np.ndarray, mode: str) -> np.ndarray:
    """16-bit samples (``0..65535``) to ``0..255``, rounded. Mode ``I`` holds 16-bit PNG data
    too (older Pillow); values beyond 16 bits saturate."""
    wide = values.astype(np.int64)
    if mode == "I":
        wide = np.clip(wide, 0, 65535)
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[:, :, None], 3, axis=2)
