"""Resizing with ComfyUI's semantics (``comfy.utils.common_upscale``).

Tensors here are channels-first ``[B, C, H, W]``. ``center`` crop first trims the source to the
target aspect ratio; the resize is ``torch.nn.functional.interpolate`` with the method's name as
its mode, except ``lanczos``, which goes through Pillow on uint8 like ComfyUI does.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]
CROP_METHODS = ["disabled", "center"]


def center_crop_to_aspect(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Trim ``samples`` symmetrically so its aspect ratio becomes ``width / height``."""
    old_w, old_h = samples.shape[3], samples.shape[2]
    old_aspect, new_aspect = old_w / old_h, width / height
    x = y = 0
    if old_aspect > new_aspect:
        x = round((old_w - old_w * (new_aspect / old_aspect)) / 2)
    elif old_aspect < new_aspect:
        y = round((old_h - old_h * (old_aspect / new_aspect)) / 2)
    return samples[:, :, y : old_h - y, x : old_w - x]


def lanczos_resize(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Lanczos through Pillow, one image at a time (values are quantised to 8 bits)."""
    out = []
    for image in samples:
        hwc = np.clip(255.0 * image.movedim(0, -1).cpu().numpy(), 0, 255).astype(np.uint8)
        resized = Image.fromarray(hwc).resize((width, height), resample=Image.Resampling.LANCZOS)
        out.append(torch.from_numpy(np.asarray(resized).astype(np.float32) / 255.0).movedim(-1, 0))
    return torch.stack(out).to(samples.device, samples.dtype)


def common_upscale(
    samples: torch.Tensor, width: int, height: int, method: str, crop: str
) -> torch.Tensor:
    """Resize ``[B, C, H, W]`` to ``height x width`` (ComfyUI's ``common_upscale``)."""
    if crop == "center":
        samples = center_crop_to_aspect(samples, width, height)
    if method == "lanczos":
        return lanczos_resize(samples, width, height)
    if method not in UPSCALE_METHODS:
        raise ValueError(f"unsupported upscale method {method!r}")
    return F.interpolate(samples, size=(height, width), mode=method)
