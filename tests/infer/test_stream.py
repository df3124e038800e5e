"""Per-stream workflow shaping in the infer worker: passthrough detection and output sizing."""

from __future__ import annotations

import json
from fractions import Fraction
from typing import Any

import numpy as np

from infer.engine.builtin import BuiltinEngine
from infer.stream import InferStream, is_passthrough, stream_workflow
from ipc.frame import Frame, Stage
from ipc.messages import InferConfig, Message
from ipc.ring import RingSpec

INVERT = {
    "1": {"class_type": "LoadTensor", "inputs": {}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveTensor", "inputs": {"images": ["2", 0]}},
}


def test_no_workflow_is_a_passthrough() -> None:
    assert is_passthrough(stream_workflow({}))


def test_an_editor_export_that_only_saves_its_input_is_a_passthrough() -> None:
    prompt = stream_workflow(
        {
            "workflow": {
                "5": {"class_type": "LoadImage", "inputs": {"image": "x.png"}},
                "9": {"class_type": "SaveImage", "inputs": {"images": ["5", 0]}},
            }
        }
    )
    assert is_passthrough(prompt)


def test_a_workflow_with_work_in_it_is_not() -> None:
    assert not is_passthrough(stream_workflow({"workflow": INVERT}))


def test_an_output_size_scales_the_input_and_is_not_a_passthrough() -> None:
    prompt = stream_workflow({}, 256, 128)
    assert not is_passthrough(prompt)
    scale = next(n for n in prompt.values() if n["class_type"] == "ImageScale")
    assert (scale["inputs"]["width"], scale["inputs"]["height"]) == (256, 128)
    assert scale["inputs"]["crop"] == "center"
    saved = next(n for n in prompt.values() if n["class_type"] == "SaveTensor")
    assert saved["inputs"]["images"][0].endswith(".fit")


def _rgb24_stream(width: int, height: int, workflow: dict[str, Any]) -> InferStream:
    ring = RingSpec(name="unused", slots=2, max_width=64, max_height=64, pixel_format="rgb24")
    config = InferConfig(
        in_ring=ring, out_ring=ring, workflow=json.dumps(workflow), width=width, height=height
    )

    async def send(message: Message) -> None:
        pass

    stream = InferStream("s", config, BuiltinEngine("cpu"), send, wake=lambda: None)
    stream.prepare()  # validates and warms up the workflow on the engine (no rings needed)
    return stream


def _frame(width: int, height: int) -> Frame:
    return Frame(
        seq=0,
        index=0,
        pts=0,
        time_base=Fraction(1, 90_000),
        width=width,
        height=height,
        pixel_format="rgb24",
        flags=0,
        stamps=np.zeros(len(Stage), np.int64),
        data=np.zeros((height, width, 3), np.uint8),
    )


def test_an_explicit_output_size_keeps_an_inversion_on_uint8_pixels_for_frames_of_that_size() -> (
    None
):
    """The input scaling an output size adds changes nothing on frames already of that size: the
    inversion still runs on their uint8 pixels; frames of another size go through the engine,
    which scales them."""
    stream = _rgb24_stream(16, 8, INVERT)
    assert stream.invert is not None and stream.invert_size == (16, 8)
    assert stream.inverts_on_uint8(_frame(16, 8))
    assert not stream.inverts_on_uint8(_frame(32, 16))
    unsized = _rgb24_stream(0, 0, INVERT)
    assert unsized.invert is not None and unsized.invert_size is None
    assert unsized.inverts_on_uint8(_frame(32, 16))
    blur = {
        "1": {"class_type": "LoadTensor", "inputs": {}},
        "2": {
            "class_type": "ImageBlur",
            "inputs": {"image": ["1", 0], "blur_radius": 2, "sigma": 1.0},
        },
        "3": {"class_type": "SaveTensor", "inputs": {"images": ["2", 0]}},
    }
    assert _rgb24_stream(16, 8, blur).invert is None
