"""Node classes of the built-in engine, with ComfyUI's contract and names.

Nothing here imports ComfyUI, so the same classes serve the built-in engine and are registered
in real ComfyUI (the frame I/O nodes, ``FrameStatistics``, and fill-ins for core nodes an older
ComfyUI lacks).
"""

from __future__ import annotations

from infer.nodes.analysis import FrameStatistics
from infer.nodes.image import (
    EmptyImage,
    ImageCrop,
    ImageFlip,
    ImageInvert,
    ImageRotate,
    ImageScale,
    ImageScaleBy,
)
from infer.nodes.io import ByocLoadFrame, ByocSaveFrame, ByocSaveText
from infer.nodes.mask import (
    ImageCompositeMasked,
    ImageToMask,
    InvertMask,
    MaskToImage,
    SolidMask,
)
from infer.nodes.postprocessing import ImageBlend, ImageBlur, ImageSharpen

IO_NODES: dict[str, type] = {
    "ByocLoadFrame": ByocLoadFrame,
    "ByocSaveFrame": ByocSaveFrame,
    "ByocSaveText": ByocSaveText,
}

# Nodes that exist in ComfyUI under the same names, with the same inputs and results.
COMFYUI_COMPATIBLE_NODES: dict[str, type] = {
    "ImageInvert": ImageInvert,
    "ImageBlur": ImageBlur,
    "ImageSharpen": ImageSharpen,
    "ImageBlend": ImageBlend,
    "ImageScale": ImageScale,
    "ImageScaleBy": ImageScaleBy,
    "ImageCrop": ImageCrop,
    "ImageFlip": ImageFlip,
    "ImageRotate": ImageRotate,
    "EmptyImage": EmptyImage,
    "ImageToMask": ImageToMask,
    "MaskToImage": MaskToImage,
    "SolidMask": SolidMask,
    "InvertMask": InvertMask,
    "ImageCompositeMasked": ImageCompositeMasked,
}

PROJECT_NODES: dict[str, type] = {"FrameStatistics": FrameStatistics}

BUILTIN_NODES: dict[str, type] = {**IO_NODES, **COMFYUI_COMPATIBLE_NODES, **PROJECT_NODES}
"""Everything the built-in engine runs, by ``class_type``."""

# Nodes that treat every batch item on its own (or make frame-independent constants), so frames
# of several streams may share a run. Engines still check that a batched run gives one output
# frame per input frame and fall back to one run per frame when it does not.
BATCH_INDEPENDENT: frozenset[str] = frozenset(
    {
        "ByocLoadFrame",
        "ByocSaveFrame",
        "ImageInvert",
        "ImageBlur",
        "ImageSharpen",
        "ImageBlend",
        "ImageScale",
        "ImageScaleBy",
        "ImageCrop",
        "ImageFlip",
        "ImageRotate",
        "ImageToMask",
        "MaskToImage",
        "InvertMask",
        "ImageCompositeMasked",
        "EmptyImage",
        "SolidMask",
    }
)


def is_batch_independent(class_type: str, cls: type) -> bool:
    """Whether a node class may see frames of several streams in one batch (a class can say
    so itself with ``BATCH_INDEPENDENT = True``)."""
    return class_type in BATCH_INDEPENDENT or bool(getattr(cls, "BATCH_INDEPENDENT", False))


__all__ = [
    "BATCH_INDEPENDENT",
    "BUILTIN_NODES",
    "COMFYUI_COMPATIBLE_NODES",
    "IO_NODES",
    "PROJECT_NODES",
    "is_batch_independent",
]
