"""Properties of the mask nodes and ImageCompositeMasked."""

from __future__ import annotations

import pytest
import torch

from infer.nodes.image import EmptyImage
from infer.nodes.mask import (
    ImageCompositeMasked,
    ImageToMask,
    InvertMask,
    MaskToImage,
    SolidMask,
    repeat_to_batch,
)
from tests.infer.conftest import image_batch


def test_image_to_mask_and_back() -> None:
    x = image_batch(2, 5, 4)
    (green,) = ImageToMask().image_to_mask(x, "green")
    assert torch.equal(green, x[..., 1])
    (grey,) = MaskToImage().mask_to_image(green)
    assert grey.shape == x.shape and torch.equal(grey[..., 0], grey[..., 2])
    with pytest.raises(IndexError, match="no alpha channel"):
        ImageToMask().image_to_mask(x, "alpha")


def test_solid_and_inverted_mask() -> None:
    (mask,) = SolidMask().solid(0.25, width=6, height=3)
    assert mask.shape == (1, 3, 6) and torch.all(mask == 0.25)
    (inverted,) = InvertMask().invert(mask)
    assert torch.all(inverted == 0.75)


def test_repeat_to_batch_tiles_and_trims() -> None:
    t = torch.arange(2).reshape(2, 1)
    assert repeat_to_batch(t, 5).flatten().tolist() == [0, 1, 0, 1, 0]
    assert repeat_to_batch(t, 1).flatten().tolist() == [0]


def test_composite_places_the_source_and_cuts_what_falls_outside() -> None:
    (dest,) = EmptyImage().generate(width=8, height=6, batch_size=1, color=0x000000)
    (src,) = EmptyImage().generate(width=4, height=4, batch_size=1, color=0xFFFFFF)
    (out,) = ImageCompositeMasked().composite(dest, src, x=6, y=4, resize_source=False)
    assert out.shape == dest.shape
    assert torch.all(out[0, 4:, 6:] == 1.0) and float(out[0, :4].sum()) == 0.0
    assert float(dest.sum()) == 0.0  # the destination input is not modified


def test_composite_through_a_mask_and_resized_source() -> None:
    dest = image_batch(1, 8, 6, seed=1)
    src = image_batch(1, 3, 3, seed=2)
    (zero,) = SolidMask().solid(0.0, width=3, height=3)
    (kept,) = ImageCompositeMasked().composite(dest, src, 1, 1, False, mask=zero)
    assert torch.allclose(kept, dest)
    (whole,) = ImageCompositeMasked().composite(dest, src, 0, 0, True)
    assert whole.shape == dest.shape and not torch.allclose(whole, dest)
