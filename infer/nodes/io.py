"""The frame input, frame output and text output nodes, shared by both engines.

They are registered in real ComfyUI too, so ComfyUI's own nodes run on live frames. Each reads
or writes the ``RunSlot`` named by its ``run_id`` input, which the engine sets per run. Every
``INPUT_TYPES`` has a ``"required"`` key (ComfyUI 0.0.1 silently skips nodes without one) and
``IS_CHANGED`` returns NaN so ComfyUI never serves them from its cache.
"""

from __future__ import annotations

from typing import Any

import torch

from infer.exchange import EXCHANGE

_RUN_ID = ("STRING", {"default": ""})


class ByocLoadFrame:
    """The live frame (a batch of frames when streams are batched) as an ``IMAGE``."""

    CATEGORY = "byoc/stream"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "load"
    FRAME_SOURCE = True

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"run_id": _RUN_ID}}

    @classmethod
    def IS_CHANGED(cls, **_: Any) -> float:
        return float("nan")

    def load(self, run_id: str) -> tuple[torch.Tensor]:
        return (EXCHANGE.get(run_id).images,)


class ByocSaveFrame:
    """Receives the processed frame(s): ``images`` becomes the stream's output."""

    CATEGORY = "byoc/stream"
    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"images": ("IMAGE",), "run_id": _RUN_ID}}

    @classmethod
    def IS_CHANGED(cls, **_: Any) -> float:
        return float("nan")

    def save(self, images: torch.Tensor, run_id: str) -> dict[str, Any]:
        EXCHANGE.get(run_id).output = images
        return {"ui": {}}


class ByocSaveText:
    """ComfyStream's ``SaveTextTensor``: a ``STRING`` for the stream's data channel."""

    CATEGORY = "byoc/stream"
    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {"data": ("STRING", {"forceInput": True}), "run_id": _RUN_ID},
            "optional": {"remove_linebreaks": ("BOOLEAN", {"default": True})},
        }

    @classmethod
    def IS_CHANGED(cls, **_: Any) -> float:
        return float("nan")

    def save(self, data: str, run_id: str, remove_linebreaks: bool = True) -> dict[str, Any]:
        text = str(data)
        if remove_linebreaks:
            text = text.replace("\n", "").replace("\r", "")
        EXCHANGE.get(run_id).texts.append(text)
        return {"ui": {}}
