"""ComfyUI's post-processing nodes: ``ImageBlur``, ``ImageSharpen``, ``ImageBlend``.

The blur and sharpen kernels are Gaussians sampled on ``linspace(-1, 1)`` over the kernel
(so ``sigma`` is relative to the radius, as in ComfyUI), applied per channel on a
reflect-padded image.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from infer.nodes.upscale import common_upscale


def gaussian_kernel(size: int, sigma: float, device: torch.device) -> torch.Tensor:
    """Normalised 2-D Gaussian of ``size x size`` over the square [-1, 1]^2."""
    axis = torch.linspace(-1, 1, size, device=device)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    kernel = torch.exp(-(x * x + y * y) / (2.0 * sigma * sigma))
    return kernel / kernel.sum()


def _depthwise(image: torch.Tensor, kernel: torch.Tensor, radius: int) -> torch.Tensor:
    """Convolve each channel of ``[B, H, W, C]`` with ``kernel`` on a reflect-padded copy."""
    channels = image.shape[-1]
    weight = kernel.expand(channels, 1, *kernel.shape)
    chw = image.permute(0, 3, 1, 2)
    padded = F.pad(chw, (radius, radius, radius, radius), mode="reflect")
    return F.conv2d(padded, weight, groups=channels).permute(0, 2, 3, 1)


class ImageBlur:
    """Gaussian blur of radius ``blur_radius``."""

    CATEGORY = "image/postprocessing"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "blur"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "image": ("IMAGE",),
                "blur_radius": ("INT", {"default": 1, "min": 1, "max": 31, "step": 1}),
                "sigma": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.1}),
            }
        }

    def blur(self, image: torch.Tensor, blur_radius: int, sigma: float) -> tuple[torch.Tensor]:
        if blur_radius == 0:
            return (image,)
        kernel = gaussian_kernel(blur_radius * 2 + 1, sigma, image.device)
        return (_depthwise(image, kernel, blur_radius),)


class ImageSharpen:
    """Unsharp-style sharpening: a centre-weighted negative Gaussian, clamped to [0, 1]."""

    CATEGORY = "image/postprocessing"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "sharpen"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "image": ("IMAGE",),
                "sharpen_radius": ("INT", {"default": 1, "min": 1, "max": 31, "step": 1}),
                "sigma": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.01}),
                "alpha": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 5.0, "step": 0.01}),
            }
        }

    def sharpen(
        self, image: torch.Tensor, sharpen_radius: int, sigma: float, alpha: float
    ) -> tuple[torch.Tensor]:
        if sharpen_radius == 0:
            return (image,)
        size = sharpen_radius * 2 + 1
        kernel = gaussian_kernel(size, sigma, image.device) * -(alpha * 10)
        centre = size // 2
        kernel[centre, centre] = kernel[centre, centre] - kernel.sum() + 1.0
        return (torch.clamp(_depthwise(image, kernel, sharpen_radius), 0, 1),)


class ImageBlend:
    """Blend ``image2`` over ``image1`` with a mode, mixed by ``blend_factor``."""

    CATEGORY = "image/postprocessing"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "blend_images"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "image1": ("IMAGE",),
                "image2": ("IMAGE",),
                "blend_factor": (
                    "FLOAT",
                    {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01},
                ),
                "blend_mode": (
                    ["normal", "multiply", "screen", "overlay", "soft_light", "difference"],
                ),
            }
        }

    def blend_images(
        self, image1: torch.Tensor, image2: torch.Tensor, blend_factor: float, blend_mode: str
    ) -> tuple[torch.Tensor]:
        image2 = image2.to(image1.device)
        if image1.shape != image2.shape:
            resized = common_upscale(
                image2.permute(0, 3, 1, 2), image1.shape[2], image1.shape[1], "bicubic", "center"
            )
            image2 = resized.permute(0, 2, 3, 1)
        mixed = self._mode(image1, image2, blend_mode)
        out = image1 * (1 - blend_factor) + mixed * blend_factor
        return (torch.clamp(out, 0, 1),)

    @staticmethod
    def _mode(a: torch.Tensor, b: torch.Tensor, mode: str) -> torch.Tensor:
        if mode == "normal":
            return b
        if mode == "multiply":
            return a * b
        if mode == "screen":
            return 1 - (1 - a) * (1 - b)
        if mode == "overlay":
            return torch.where(a <= 0.5, 2 * a * b, 1 - 2 * (1 - a) * (1 - b))
        if mode == "soft_light":
            d = torch.where(a <= 0.25, ((16 * a - 12) * a + 4) * a, torch.sqrt(a))
            return torch.where(b <= 0.5, a - (1 - 2 * b) * a * (1 - a), a + (2 * b - 1) * (d - a))
        if mode == "difference":
            return a - b
        raise ValueError(f"unsupported blend mode: {mode}")
