"""Core image nodes with ComfyUI's class names, inputs, defaults and results.

Images are ``[B, H, W, C]`` float32 in [0, 1]. ``ImageFlip`` and ``ImageRotate`` follow current
ComfyUI (they are newer than the 0.0.1 snapshot tested here, so the real-ComfyUI engine gets
these classes registered when its ComfyUI lacks them).
"""

from __future__ import annotations

from typing import Any

import torch

from infer.nodes.device import node_device
from infer.nodes.upscale import CROP_METHODS, UPSCALE_METHODS, common_upscale

MAX_RESOLUTION = 16384


class ImageInvert:
    """``1 - image``."""

    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "invert"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"image": ("IMAGE",)}}

    def invert(self, image: torch.Tensor) -> tuple[torch.Tensor]:
        return (1.0 - image,)


class EmptyImage:
    """A batch of one solid colour (``color`` is 0xRRGGBB)."""

    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "width": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
                "height": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
                "color": (
                    "INT",
                    {"default": 0, "min": 0, "max": 0xFFFFFF, "step": 1, "display": "color"},
                ),
            }
        }

    def generate(
        self, width: int, height: int, batch_size: int = 1, color: int = 0
    ) -> tuple[torch.Tensor]:
        rgb = [((color >> shift) & 0xFF) / 0xFF for shift in (16, 8, 0)]
        pixel = torch.tensor(rgb, dtype=torch.float32, device=node_device())
        return (pixel.expand(batch_size, height, width, 3).contiguous(),)


class ImageCrop:
    """A ``width x height`` window at (``x``, ``y``); the origin is clamped into the image."""

    CATEGORY = "image/transform"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "crop"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "image": ("IMAGE",),
                "width": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
                "height": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
                "x": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                "y": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
            }
        }

    def crop(
        self, image: torch.Tensor, width: int, height: int, x: int, y: int
    ) -> tuple[torch.Tensor]:
        x = min(x, image.shape[2] - 1)
        y = min(y, image.shape[1] - 1)
        return (image[:, y : y + height, x : x + width, :],)


class ImageFlip:
    """Mirror: ``x-axis`` flips rows (vertically), ``y-axis`` flips columns (horizontally)."""

    CATEGORY = "image/transform"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "flip"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "image": ("IMAGE",),
                "flip_method": (["x-axis: vertically", "y-axis: horizontally"],),
            }
        }

    def flip(self, image: torch.Tensor, flip_method: str) -> tuple[torch.Tensor]:
        if flip_method.startswith("x"):
            return (torch.flip(image, dims=[1]),)
        if flip_method.startswith("y"):
            return (torch.flip(image, dims=[2]),)
        return (image,)


class ImageRotate:
    """Rotation by quarter turns, clockwise."""

    CATEGORY = "image/transform"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "rotate"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "image": ("IMAGE",),
                "rotation": (["none", "90 degrees", "180 degrees", "270 degrees"],),
            }
        }

    def rotate(self, image: torch.Tensor, rotation: str) -> tuple[torch.Tensor]:
        turns = {"90": 1, "180": 2, "270": 3}.get(rotation.split(" ")[0], 0)
        # Rotating from the width axis towards the height axis turns the picture clockwise.
        return (torch.rot90(image, k=turns, dims=[2, 1]),)


class ImageScale:
    """Resize to ``width x height``; 0 for one side keeps the aspect ratio, 0 for both is a no-op."""

    CATEGORY = "image/upscaling"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "image": ("IMAGE",),
                "upscale_method": (UPSCALE_METHODS,),
                "width": ("INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                "height": ("INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                "crop": (CROP_METHODS,),
            }
        }

    def upscale(
        self, image: torch.Tensor, upscale_method: str, width: int, height: int, crop: str
    ) -> tuple[torch.Tensor]:
        if width == 0 and height == 0:
            return (image,)
        samples = image.movedim(-1, 1)
        if width == 0:
            width = max(1, round(samples.shape[3] * height / samples.shape[2]))
        elif height == 0:
            height = max(1, round(samples.shape[2] * width / samples.shape[3]))
        return (common_upscale(samples, width, height, upscale_method, crop).movedim(1, -1),)


class ImageScaleBy:
    """Resize by a factor (each side rounded)."""

    CATEGORY = "image/upscaling"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "image": ("IMAGE",),
                "upscale_method": (UPSCALE_METHODS,),
                "scale_by": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 8.0, "step": 0.01}),
            }
        }

    def upscale(
        self, image: torch.Tensor, upscale_method: str, scale_by: float
    ) -> tuple[torch.Tensor]:
        samples = image.movedim(-1, 1)
        width = round(samples.shape[3] * scale_by)
        height = round(samples.shape[2] * scale_by)
        return (common_upscale(samples, width, height, upscale_method, "disabled").movedim(1, -1),)
