"""ComfyUI's mask nodes and ``ImageCompositeMasked``. Masks are ``[B, H, W]`` float32."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from infer.nodes.device import node_device
from infer.nodes.image import MAX_RESOLUTION


def repeat_to_batch(tensor: torch.Tensor, batch: int) -> torch.Tensor:
    """Trim or tile ``tensor`` along dim 0 to ``batch`` items."""
    n = tensor.shape[0]
    if n > batch:
        return tensor.narrow(0, 0, batch)
    if n < batch:
        reps = [-(-batch // n)] + [1] * (tensor.dim() - 1)
        return tensor.repeat(reps).narrow(0, 0, batch)
    return tensor


def composite(
    destination: torch.Tensor,
    source: torch.Tensor,
    x: int,
    y: int,
    mask: torch.Tensor | None,
    resize_source: bool,
) -> torch.Tensor:
    """Paste ``source`` onto ``destination`` (both ``[B, C, H, W]``; ``destination`` is written)
    at (x, y), weighted by ``mask`` resized to the source; parts outside are cut off."""
    source = source.to(destination.device)
    if resize_source:
        source = F.interpolate(source, size=destination.shape[2:], mode="bilinear")
    source = repeat_to_batch(source, destination.shape[0])
    x = max(-source.shape[3], min(x, destination.shape[3]))
    y = max(-source.shape[2], min(y, destination.shape[2]))
    left, top = x, y
    right, bottom = left + source.shape[3], top + source.shape[2]
    if mask is None:
        weight = torch.ones_like(source)
    else:
        weight = mask.to(destination.device, copy=True).reshape(-1, 1, *mask.shape[-2:])
        weight = F.interpolate(weight, size=source.shape[2:], mode="bilinear")
        weight = repeat_to_batch(weight, source.shape[0])
    visible_w = destination.shape[3] - left + min(0, x)
    visible_h = destination.shape[2] - top + min(0, y)
    weight = weight[:, :, :visible_h, :visible_w]
    pasted = weight * source[:, :, :visible_h, :visible_w]
    kept = (torch.ones_like(weight) - weight) * destination[:, :, top:bottom, left:right]
    destination[:, :, top:bottom, left:right] = pasted + kept
    return destination


class ImageCompositeMasked:
    """Paste ``source`` onto ``destination`` at (x, y), optionally through a mask."""

    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "composite"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "destination": ("IMAGE",),
                "source": ("IMAGE",),
                "x": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                "y": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                "resize_source": ("BOOLEAN", {"default": False}),
            },
            "optional": {"mask": ("MASK",)},
        }

    def composite(
        self,
        destination: torch.Tensor,
        source: torch.Tensor,
        x: int,
        y: int,
        resize_source: bool,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor]:
        dest = destination.clone().movedim(-1, 1)
        out = composite(dest, source.movedim(-1, 1), x, y, mask, resize_source)
        return (out.movedim(1, -1),)


class ImageToMask:
    """One channel of an image as a mask."""

    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "image_to_mask"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"image": ("IMAGE",), "channel": (["red", "green", "blue", "alpha"],)}}

    def image_to_mask(self, image: torch.Tensor, channel: str) -> tuple[torch.Tensor]:
        index = ["red", "green", "blue", "alpha"].index(channel)
        if index >= image.shape[-1]:
            raise IndexError(f"the image has {image.shape[-1]} channels, no {channel} channel")
        return (image[:, :, :, index],)


class MaskToImage:
    """A mask as a grey image (the mask in all three channels)."""

    CATEGORY = "mask"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "mask_to_image"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"mask": ("MASK",)}}

    def mask_to_image(self, mask: torch.Tensor) -> tuple[torch.Tensor]:
        image = mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1]).movedim(1, -1)
        return (image.expand(-1, -1, -1, 3),)


class SolidMask:
    """A ``width x height`` mask filled with ``value``."""

    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "solid"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "value": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
                "width": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
                "height": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
            }
        }

    def solid(self, value: float, width: int, height: int) -> tuple[torch.Tensor]:
        return (torch.full((1, height, width), value, dtype=torch.float32, device=node_device()),)


class InvertMask:
    """``1 - mask``."""

    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "invert"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"mask": ("MASK",)}}

    def invert(self, mask: torch.Tensor) -> tuple[torch.Tensor]:
        return (1.0 - mask,)
