"""Every Pillow mode a PNG or JPEG decodes to becomes the right RGB picture: real files written
by Pillow, decoded through the image job's own path (base64 in, ``decode_image``)."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import pytest
from PIL import Image

from infer.image_job import ImageJobLimits, decode_image
from infer.image_modes import rgb_array

# Four flat patches (red, green, blue, grey) over a horizontal ramp.
W, H = 48, 32


def _reference() -> np.ndarray:
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[:, :, :] = np.linspace(0, 255, W, dtype=np.uint8)[None, :, None]
    rgb[:12, :12] = (220, 30, 40)
    rgb[:12, 12:24] = (20, 200, 60)
    rgb[:12, 24:36] = (30, 50, 210)
    rgb[:12, 36:] = (128, 128, 128)
    return rgb


def _decode(image: Image.Image, fmt: str, **save: Any) -> np.ndarray:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    data = base64.b64encode(buffer.getvalue()).decode()
    reopened = Image.open(io.BytesIO(base64.b64decode(data)))
    assert reopened.mode == image.mode, (reopened.mode, image.mode)  # the mode under test
    return decode_image(data, ImageJobLimits())


def _grey(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).convert("L"))


def _assert_close(got: np.ndarray, want: np.ndarray, tolerance: float) -> None:
    assert got.shape == want.shape and got.dtype == np.uint8
    error = np.abs(got.astype(np.int16) - want.astype(np.int16))
    assert float(error.mean()) <= tolerance, float(error.mean())


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_rgb(fmt: str) -> None:
    rgb = _reference()
    _assert_close(_decode(Image.fromarray(rgb), fmt, quality=95), rgb, 0 if fmt == "PNG" else 3)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_greyscale_l(fmt: str) -> None:
    grey = _grey(_reference())
    got = _decode(Image.fromarray(grey, "L"), fmt, quality=95)
    _assert_close(got, np.repeat(grey[:, :, None], 3, 2), 0 if fmt == "PNG" else 3)


def test_bilevel_1() -> None:
    grey = _grey(_reference())
    image = Image.fromarray(grey, "L").convert("1", dither=Image.Dither.NONE)
    want = np.where(grey >= 128, 255, 0).astype(np.uint8)
    _assert_close(_decode(image, "PNG"), np.repeat(want[:, :, None], 3, 2), 0)


def test_greyscale_with_alpha_la() -> None:
    grey = _grey(_reference())
    alpha = np.full_like(grey, 255)
    alpha[:, : W // 2] = 0  # transparent half keeps its grey value
    image = Image.merge("LA", [Image.fromarray(grey, "L"), Image.fromarray(alpha, "L")])
    _assert_close(_decode(image, "PNG"), np.repeat(grey[:, :, None], 3, 2), 0)


def test_rgba_drops_alpha() -> None:
    rgb = _reference()
    alpha = np.full((H, W), 90, np.uint8)
    image = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    _assert_close(_decode(image, "PNG"), rgb, 0)


@pytest.mark.parametrize("transparency", [False, True])
def test_palette_p(transparency: bool) -> None:
    rgb = _reference()
    image = Image.fromarray(rgb).quantize(colors=64, dither=Image.Dither.NONE)
    if transparency:
        image.info["transparency"] = 0  # one palette index is transparent
    want = np.asarray(image.convert("RGB"))
    got = _decode(image, "PNG", **({"transparency": 0} if transparency else {}))
    _assert_close(got, want, 0)
    _assert_close(got, rgb, 4)  # and the palette is a close picture of the source


def test_sixteen_bit_greyscale_i16() -> None:
    grey = _grey(_reference())
    image = Image.fromarray(grey.astype(np.uint16) * 257)  # full 16-bit range
    assert image.mode == "I;16"
    got = _decode(image, "PNG")
    _assert_close(got, np.repeat(grey[:, :, None], 3, 2), 0)
    assert (got[:12, 36:] == grey[:12, 36:, None]).all()  # not black: the bug this guards


def test_thirty_two_bit_greyscale_i() -> None:
    grey = _grey(_reference())
    image = Image.fromarray(grey.astype(np.int32) * 257, "I")
    got = rgb_array(image)
    _assert_close(got, np.repeat(grey[:, :, None], 3, 2), 0)


def test_cmyk_jpeg_adobe_inverted() -> None:
    """Pillow writes CMYK JPEGs as libjpeg does: an Adobe APP14 marker and inverted samples,
    which is what Photoshop exports too."""
    rgb = _reference()
    image = Image.fromarray(rgb).convert("CMYK")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    assert b"Adobe" in buffer.getvalue()[:200]
    got = _decode(image, "JPEG", quality=95)
    _assert_close(got, rgb, 4)
    patch = got[2:10, 2:10].reshape(-1, 3).mean(0)
    assert np.abs(patch - (220, 30, 40)).max() <= 6, patch
