"""Shared helpers for the inference tests: small workflows and deterministic frames."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from infer.engine.base import RunResult
from infer.engine.builtin import BuiltinEngine


def chain(*nodes: tuple[str, dict[str, Any]], save: bool = True) -> dict[str, Any]:
    """``LoadTensor -> node1 -> node2 ... -> SaveTensor``; each node's ``image`` input links to
    the previous node unless the node names its own links."""
    prompt: dict[str, Any] = {"1": {"class_type": "LoadTensor", "inputs": {}}}
    previous = "1"
    for i, (class_type, inputs) in enumerate(nodes, start=2):
        node_inputs = dict(inputs)
        if not any(isinstance(v, list) for v in node_inputs.values()):
            node_inputs["image"] = [previous, 0]
        prompt[str(i)] = {"class_type": class_type, "inputs": node_inputs}
        previous = str(i)
    if save:
        prompt["99"] = {"class_type": "SaveTensor", "inputs": {"images": [previous, 0]}}
    return prompt


INVERT = chain(("ImageInvert", {}))
PASSTHROUGH = chain()


def rgb_frame(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A deterministic random rgb24 frame."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def image_batch(batch: int, width: int, height: int, seed: int = 0) -> torch.Tensor:
    """A deterministic random ``[B, H, W, 3]`` float image batch in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((batch, height, width, 3), generator=generator)


def images_of(result: RunResult) -> torch.Tensor:
    """The frame output of a run (which must have one)."""
    assert result.images is not None, "the run produced no frame output"
    return result.images


@pytest.fixture
def engine() -> BuiltinEngine:
    """A built-in engine on the CPU."""
    return BuiltinEngine("cpu")


class CountingInvert:
    """ImageInvert that counts its calls and the frames it saw (observes warm-up and batching)."""

    CATEGORY = "test"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "invert"
    BATCH_INDEPENDENT = True
    calls = 0
    frames = 0

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"image": ("IMAGE",)}}

    def invert(self, image: torch.Tensor) -> tuple[torch.Tensor]:
        CountingInvert.calls += 1
        CountingInvert.frames += int(image.shape[0])
        return (1.0 - image,)


class FailsOnBright:
    """Raises on any frame whose mean is above 0.9; passes others through unchanged."""

    CATEGORY = "test"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "check"
    BATCH_INDEPENDENT = True

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"image": ("IMAGE",)}}

    def check(self, image: torch.Tensor) -> tuple[torch.Tensor]:
        if bool((image.mean(dim=(1, 2, 3)) > 0.9).any()):
            raise ValueError("too bright")
        return (image,)


@pytest.fixture
def test_engine() -> BuiltinEngine:
    """A built-in engine that also knows the test nodes above."""
    from infer.nodes import BUILTIN_NODES

    CountingInvert.calls = CountingInvert.frames = 0
    return BuiltinEngine(
        "cpu",
        nodes={**BUILTIN_NODES, "CountingInvert": CountingInvert, "FailsOnBright": FailsOnBright},
    )
