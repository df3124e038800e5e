"""Properties of the image nodes that hold whatever the exact numbers (those are checked against
real ComfyUI in ``tests/infer/engine/test_comfyui.py``). ``ImageFlip``/``ImageRotate`` are newer
than the ComfyUI snapshot available here, so their semantics are pinned down here."""

from __future__ import annotations

import pytest
import torch

from infer.nodes.image import (
    EmptyImage,
    ImageCrop,
    ImageFlip,
    ImageInvert,
    ImageRotate,
    ImageScale,
    ImageScaleBy,
)
from tests.infer.conftest import image_batch


def test_invert_twice_is_identity() -> None:
    x = image_batch(2, 8, 6)
    (once,) = ImageInvert().invert(x)
    (twice,) = ImageInvert().invert(once)
    assert torch.allclose(twice, x) and not torch.allclose(once, x)


def test_empty_image_colour_channels_and_shape() -> None:
    (img,) = EmptyImage().generate(width=5, height=3, batch_size=2, color=0xFF8000)
    assert img.shape == (2, 3, 5, 3) and img.dtype == torch.float32
    assert torch.equal(img[0, 0, 0], torch.tensor([1.0, 128 / 255, 0.0]))
    assert torch.equal(img, img[:1, :1, :1].expand_as(img))


def test_flip_x_axis_reverses_rows_and_y_axis_reverses_columns() -> None:
    x = image_batch(1, 4, 3)
    (vertical,) = ImageFlip().flip(x, "x-axis: vertically")
    (horizontal,) = ImageFlip().flip(x, "y-axis: horizontally")
    assert torch.equal(vertical[0, 0], x[0, -1]) and torch.equal(vertical[0, -1], x[0, 0])
    assert torch.equal(horizontal[0, :, 0], x[0, :, -1])


def test_rotate_90_is_clockwise_and_four_turns_are_identity() -> None:
    x = torch.zeros(1, 2, 3, 3)
    x[0, 0, 0] = 1.0  # top-left pixel
    (turned,) = ImageRotate().rotate(x, "90 degrees")
    assert turned.shape == (1, 3, 2, 3)
    assert turned[0, 0, -1, 0] == 1.0  # top-left goes to top-right when turning clockwise
    y = image_batch(1, 5, 4)
    for rotation, back in (("90 degrees", "270 degrees"), ("180 degrees", "180 degrees")):
        (there,) = ImageRotate().rotate(y, rotation)
        (again,) = ImageRotate().rotate(there, back)
        assert torch.equal(again, y)
    (same,) = ImageRotate().rotate(y, "none")
    assert torch.equal(same, y)


def test_crop_clamps_the_origin_into_the_image() -> None:
    x = image_batch(1, 10, 8)
    (window,) = ImageCrop().crop(x, width=4, height=3, x=2, y=1)
    assert torch.equal(window, x[:, 1:4, 2:6])
    (corner,) = ImageCrop().crop(x, width=4, height=4, x=50, y=50)
    assert corner.shape == (1, 1, 1, 3) and torch.equal(corner, x[:, -1:, -1:])


@pytest.mark.parametrize("method", ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"])
def test_scale_sizes_and_aspect_from_zero(method: str) -> None:
    x = image_batch(2, 16, 8)
    (out,) = ImageScale().upscale(x, method, width=32, height=0, crop="disabled")
    assert out.shape == (2, 16, 32, 3)
    (same,) = ImageScale().upscale(x, method, width=0, height=0, crop="disabled")
    assert same is x
    (by,) = ImageScaleBy().upscale(x, method, scale_by=0.5)
    assert by.shape == (2, 4, 8, 3)


def test_scale_of_a_solid_colour_stays_that_colour() -> None:
    (solid,) = EmptyImage().generate(width=12, height=9, batch_size=1, color=0x336699)
    for method in ("nearest-exact", "bilinear", "area", "bicubic"):
        (out,) = ImageScale().upscale(solid, method, width=20, height=7, crop="center")
        assert torch.allclose(out, solid[:, :1, :1].expand_as(out), atol=1e-6)
