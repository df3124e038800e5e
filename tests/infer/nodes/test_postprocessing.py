"""Properties of blur, sharpen and blend (exact values are compared with real ComfyUI)."""

from __future__ import annotations

import pytest
import torch

from infer.nodes.image import EmptyImage
from infer.nodes.postprocessing import ImageBlend, ImageBlur, ImageSharpen, gaussian_kernel
from tests.infer.conftest import image_batch


def test_gaussian_kernel_is_normalised_and_symmetric() -> None:
    k = gaussian_kernel(5, 0.7, torch.device("cpu"))
    assert torch.isclose(k.sum(), torch.tensor(1.0))
    assert torch.allclose(k, k.T) and torch.allclose(k, k.flip(0))
    assert k[2, 2] == k.max()


def test_blur_keeps_constant_images_and_smooths_noise() -> None:
    (solid,) = EmptyImage().generate(width=9, height=7, batch_size=1, color=0x8040C0)
    (blurred,) = ImageBlur().blur(solid, blur_radius=3, sigma=1.0)
    assert blurred.shape == solid.shape and torch.allclose(blurred, solid, atol=1e-6)
    noise = image_batch(1, 32, 32)
    (smooth,) = ImageBlur().blur(noise, blur_radius=2, sigma=1.0)
    assert smooth.std() < noise.std() * 0.8


def test_sharpen_keeps_constant_images_and_increases_contrast() -> None:
    (solid,) = EmptyImage().generate(width=9, height=7, batch_size=1, color=0x8040C0)
    (same,) = ImageSharpen().sharpen(solid, sharpen_radius=2, sigma=1.0, alpha=1.0)
    assert torch.allclose(same, solid, atol=1e-5)
    noise = image_batch(1, 32, 32) * 0.5 + 0.25
    (sharp,) = ImageSharpen().sharpen(noise, sharpen_radius=1, sigma=1.0, alpha=0.5)
    assert sharp.std() > noise.std() and float(sharp.min()) >= 0 and float(sharp.max()) <= 1


@pytest.mark.parametrize(
    "mode", ["normal", "multiply", "screen", "overlay", "soft_light", "difference"]
)
def test_blend_factor_zero_returns_the_first_image(mode: str) -> None:
    a, b = image_batch(1, 6, 4, seed=1), image_batch(1, 6, 4, seed=2)
    (out,) = ImageBlend().blend_images(a, b, blend_factor=0.0, blend_mode=mode)
    assert torch.allclose(out, a)


def test_blend_resizes_the_second_image_to_the_first() -> None:
    a = image_batch(2, 8, 6)
    (b,) = EmptyImage().generate(width=3, height=3, batch_size=1, color=0xFFFFFF)
    (out,) = ImageBlend().blend_images(a, b, blend_factor=1.0, blend_mode="normal")
    assert out.shape == a.shape and torch.allclose(out, torch.ones_like(a), atol=1e-6)
