"""Inversion chains run on rgb24 ring pixels: which workflows qualify, and that the result is
bit for bit what the float path (built-in engine) gives."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from infer.nodes.image import ImageInvert
from infer.stream import stream_workflow
from infer.tensors import PixelConverter
from infer.uint8_path import Uint8Inverter, invert_chain_length
from ipc.ring import FrameRing, RingSpec


def chain(count: int, output_node: str = "SaveTensor") -> dict[str, dict[str, object]]:
    prompt: dict[str, dict[str, object]] = {"in": {"class_type": "LoadTensor", "inputs": {}}}
    previous = "in"
    for index in range(count):
        prompt[f"i{index}"] = {"class_type": "ImageInvert", "inputs": {"image": [previous, 0]}}
        previous = f"i{index}"
    prompt["out"] = {"class_type": output_node, "inputs": {"images": [previous, 0]}}
    return prompt


@pytest.mark.parametrize("count", [0, 1, 2, 3])
def test_a_chain_of_inversions_is_counted(count: int) -> None:
    assert invert_chain_length(chain(count)) == count


def test_other_workflows_do_not_qualify() -> None:
    blurred = chain(1)
    blurred["b"] = {"class_type": "ImageBlur", "inputs": {"image": ["i0", 0], "blur_radius": 1}}
    blurred["out"]["inputs"] = {"images": ["b", 0]}
    assert invert_chain_length(blurred) is None
    dangling = chain(1)
    dangling["extra"] = {"class_type": "ImageInvert", "inputs": {"image": ["in", 0]}}
    assert invert_chain_length(dangling) is None  # an inversion off the chain
    assert invert_chain_length(stream_workflow({"workflow": chain(1)}, 64, 64)) is None  # scaled
    no_output = {k: v for k, v in chain(1).items() if k != "out"}
    assert invert_chain_length(no_output) is None


def test_uint8_inversion_equals_the_float_path_bit_for_bit() -> None:
    height, width = 37, 53
    pixels = np.random.default_rng(11).integers(0, 256, (height, width, 3), dtype=np.uint8)
    converter = PixelConverter(width, height, "rgb24")
    with torch.inference_mode():
        (inverted,) = ImageInvert().invert(converter.to_images([pixels]))
        reference = converter.to_frames(inverted)[0]
    spec = RingSpec(
        name="cbyoc-test-u8-in", slots=2, max_width=64, max_height=64, pixel_format="rgb24"
    )
    ring = FrameRing.create(spec)
    try:
        with ring.writer() as writer, ring.reader() as reader:
            writer.write(pixels, pts=1, time_base=Fraction(1, 90_000))
            frame = reader.read(copy=False)
            assert frame is not None
            with frame:
                result = Uint8Inverter()(frame)
                assert (result.width, result.height) == (width, height)
                got = result.frame.reshape(height, width, 3).copy()
                assert 0 < result.infer_start_ns <= result.infer_end_ns
    finally:
        ring.close()
        ring.unlink()
    assert np.array_equal(got, reference)
    assert np.array_equal(got, 255 - pixels)
