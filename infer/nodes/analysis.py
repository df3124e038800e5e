"""Project nodes that describe frames as text (real producers for the text output path)."""

from __future__ import annotations

import json
from typing import Any

import torch


class FrameStatistics:
    """Per-channel mean, minimum and maximum of an image batch, as a JSON ``STRING``.

    Values are in [0, 1] and rounded to ``precision`` decimals; ``width``, ``height`` and
    ``frames`` (the batch size) are included so the text can be read on its own.
    """

    CATEGORY = "byoc/analysis"
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("json",)
    FUNCTION = "statistics"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {"image": ("IMAGE",)},
            "optional": {"precision": ("INT", {"default": 4, "min": 0, "max": 8, "step": 1})},
        }

    def statistics(self, image: torch.Tensor, precision: int = 4) -> tuple[str]:
        flat = image.reshape(-1, image.shape[-1]).float()
        # One device-to-host transfer for all nine numbers.
        stacked = torch.stack([flat.mean(0), flat.amin(0), flat.amax(0)]).cpu().tolist()
        mean, low, high = ([round(v, precision) for v in row] for row in stacked)
        return (
            json.dumps(
                {
                    "frames": int(image.shape[0]),
                    "width": int(image.shape[2]),
                    "height": int(image.shape[1]),
                    "mean": mean,
                    "min": low,
                    "max": high,
                },
                separators=(",", ":"),
            ),
        )
