"""Real ComfyUI (0.0.1, in ``.venv-comfyui``) through the project's engine adapter.

Run with ``.venv-comfyui/bin/python -m pytest -m comfyui``. ComfyUI is the reference: every node
both engines have runs on the same inputs in both, and the built-in engine must match. In this
environment ComfyUI is meant to be installed, so a failed import fails these tests.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from infer.batching import process_frames
from infer.engine.base import Engine
from infer.engine.builtin import BuiltinEngine
from infer.errors import EngineUnavailableError, NodeExecutionError, WorkflowError
from infer.image_job import run_image_job
from infer.nodes import COMFYUI_COMPATIBLE_NODES
from infer.workflow_runner import WorkflowRunner
from tests.infer.conftest import INVERT, chain, image_batch, images_of, rgb_frame

pytestmark = pytest.mark.comfyui


@pytest.fixture
def comfy(comfy_engine: Engine) -> Engine:
    return comfy_engine


@pytest.fixture(scope="module")
def builtin() -> BuiltinEngine:
    return BuiltinEngine("cpu")


def _blend(mode: str, factor: float, second: str) -> dict[str, Any]:
    prompt: dict[str, Any] = {"1": {"class_type": "LoadTensor", "inputs": {}}}
    if second == "empty":
        prompt["2"] = {
            "class_type": "EmptyImage",
            "inputs": {"width": 7, "height": 5, "batch_size": 1, "color": 0x3080F0},
        }
    else:
        prompt["2"] = {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}}
    prompt["3"] = {
        "class_type": "ImageBlend",
        "inputs": {
            "image1": ["1", 0],
            "image2": ["2", 0],
            "blend_factor": factor,
            "blend_mode": mode,
        },
    }
    prompt["4"] = {"class_type": "SaveTensor", "inputs": {"images": ["3", 0]}}
    return prompt


def _composite(x: int, y: int, resize: bool, mask: str | None) -> dict[str, Any]:
    prompt: dict[str, Any] = {
        "1": {"class_type": "LoadTensor", "inputs": {}},
        "2": {
            "class_type": "EmptyImage",
            "inputs": {"width": 9, "height": 6, "batch_size": 1, "color": 0xFF2040},
        },
        "5": {"class_type": "SaveTensor", "inputs": {"images": ["4", 0]}},
    }
    inputs: dict[str, Any] = {
        "destination": ["1", 0],
        "source": ["2", 0],
        "x": x,
        "y": y,
        "resize_source": resize,
    }
    if mask == "solid":
        prompt["3"] = {
            "class_type": "SolidMask",
            "inputs": {"value": 0.35, "width": 5, "height": 4},
        }
        inputs["mask"] = ["3", 0]
    elif mask == "inverted-red":
        prompt["3"] = {"class_type": "ImageToMask", "inputs": {"image": ["1", 0], "channel": "red"}}
        prompt["6"] = {"class_type": "InvertMask", "inputs": {"mask": ["3", 0]}}
        inputs["mask"] = ["6", 0]
    prompt["4"] = {"class_type": "ImageCompositeMasked", "inputs": inputs}
    return prompt


PARITY: dict[str, dict[str, Any]] = {
    "invert": INVERT,
    **{
        f"blur-r{r}-s{s}": chain(("ImageBlur", {"blur_radius": r, "sigma": s}))
        for r, s in ((1, 1.0), (3, 0.4), (5, 2.5))
    },
    **{
        f"sharpen-r{r}-a{a}": chain(
            ("ImageSharpen", {"sharpen_radius": r, "sigma": 0.8, "alpha": a})
        )
        for r, a in ((1, 1.0), (3, 2.5))
    },
    **{
        f"blend-{mode}-{second}": _blend(mode, 0.7, second)
        for mode in ("normal", "multiply", "screen", "overlay", "soft_light", "difference")
        for second in ("empty", "inverted")
    },
    **{
        f"scale-{method}-{crop}": chain(
            ("ImageScale", {"upscale_method": method, "width": 37, "height": 11, "crop": crop})
        )
        for method in ("nearest-exact", "bilinear", "area", "bicubic", "lanczos")
        for crop in ("disabled", "center")
    },
    "scale-keep-aspect": chain(
        ("ImageScale", {"upscale_method": "bilinear", "width": 0, "height": 40, "crop": "disabled"})
    ),
    **{
        f"scale-by-{method}-{f}": chain(("ImageScaleBy", {"upscale_method": method, "scale_by": f}))
        for method, f in (("bilinear", 0.5), ("bicubic", 1.7), ("area", 0.33), ("lanczos", 1.25))
    },
    "crop-inside": chain(("ImageCrop", {"width": 10, "height": 7, "x": 3, "y": 2})),
    "crop-clamped": chain(("ImageCrop", {"width": 50, "height": 50, "x": 100, "y": 5})),
    **{
        f"mask-{channel}": chain(
            ("ImageToMask", {"channel": channel}), ("MaskToImage", {"mask": ["2", 0]})
        )
        for channel in ("red", "green", "blue")
    },
    "invert-mask": chain(
        ("ImageToMask", {"channel": "green"}),
        ("InvertMask", {"mask": ["2", 0]}),
        ("MaskToImage", {"mask": ["3", 0]}),
    ),
    "composite-plain": _composite(3, 2, False, None),
    "composite-edge": _composite(20, 14, False, None),
    "composite-solid-mask": _composite(1, 1, False, "solid"),
    "composite-resized-frame-mask": _composite(0, 0, True, "inverted-red"),
}


def test_every_node_both_engines_have_is_compared(comfy: Engine) -> None:
    shared = set(COMFYUI_COMPATIBLE_NODES) - set(comfy.fill_ins)  # type: ignore[attr-defined]
    covered = {node["class_type"] for wf in PARITY.values() for node in wf.values()}
    assert shared <= covered, f"no parity case for {sorted(shared - covered)}"
    # The only fill-ins are nodes newer than this ComfyUI: their semantics are tested elsewhere.
    assert set(comfy.fill_ins) == {"ImageFlip", "ImageRotate"}  # type: ignore[attr-defined]


@pytest.mark.parametrize("case", sorted(PARITY))
def test_builtin_matches_comfyui(case: str, comfy: Engine, builtin: BuiltinEngine) -> None:
    images = image_batch(2, 24, 18, seed=len(case))
    reference = images_of(comfy.run(comfy.prepare(PARITY[case]), images))
    ours = images_of(builtin.run(builtin.prepare(PARITY[case]), images))
    assert reference is not None and ours is not None
    assert ours.shape == reference.shape
    assert torch.allclose(ours, reference.to(ours.device), rtol=0, atol=1e-5), (
        f"max difference {float((ours - reference).abs().max())}"
    )


COMFY_ONLY: dict[str, tuple[dict[str, Any], str, dict[str, Any]]] = {
    "quantize": ({"colors": 8, "dither": "floyd-steinberg"}, "ImageQuantize", {}),
    "quantize-bayer": ({"colors": 16, "dither": "bayer-4"}, "ImageQuantize", {}),
    "morphology-dilate": ({"operation": "dilate", "kernel_size": 3}, "Morphology", {}),
    "morphology-gradient": ({"operation": "gradient", "kernel_size": 5}, "Morphology", {}),
    "pad-for-outpaint": (
        {"left": 8, "top": 0, "right": 0, "bottom": 8, "feathering": 0},
        "ImagePadForOutpaint",
        {},
    ),
}


@pytest.mark.parametrize("case", sorted(COMFY_ONLY))
def test_comfyui_nodes_beyond_ours_run_on_frames(case: str, comfy: Engine) -> None:
    inputs, class_type, _ = COMFY_ONLY[case]
    workflow = chain((class_type, inputs))
    images = image_batch(1, 32, 24, seed=3)
    through_adapter = images_of(comfy.run(comfy.prepare(workflow), images))
    node = comfy.registry[class_type]()
    with torch.inference_mode():
        direct = getattr(node, node.FUNCTION)(image=images.clone(), **inputs)[0]
    assert through_adapter is not None and torch.equal(through_adapter, direct)

    pipeline = WorkflowRunner(comfy, f"native-{case}", 32, 24, warmup_frames=1)
    pipeline.start(workflow)
    frame = rgb_frame(32, 24, seed=5)
    (result,) = pipeline.process([frame])
    assert not result.failed
    expected = getattr(node, node.FUNCTION)(
        image=torch.from_numpy(frame)[None].float() / 255, **inputs
    )[0]
    assert result.frame.shape == tuple(expected.shape[1:])
    assert pipeline.output_size == (expected.shape[2], expected.shape[1])


def test_a_batch_changing_node_keeps_one_output_frame_per_input(comfy: Engine) -> None:
    workflow = {
        "1": {"class_type": "LoadTensor", "inputs": {}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["2", 0]}},
        "4": {"class_type": "SaveTensor", "inputs": {"images": ["3", 0]}},
    }
    result = comfy.run(comfy.prepare(workflow), image_batch(1, 8, 8))
    assert result.images is not None and result.images.shape[0] == 2
    pipeline = WorkflowRunner(comfy, "batch-node", 8, 8, warmup_frames=1)
    pipeline.start(workflow)
    frame = rgb_frame(8, 8)
    assert np.array_equal(pipeline.process([frame])[0].frame, frame)  # first image of the batch


def test_each_run_sees_its_own_frame(comfy: Engine) -> None:
    prepared = comfy.prepare(INVERT)
    for seed in range(4):  # the same prepared prompt again and again (ComfyUI mutates prompts)
        x = image_batch(1, 16, 16, seed=seed)
        assert torch.equal(images_of(comfy.run(prepared, x)), 1.0 - x)


def test_frame_independent_nodes_are_cached_between_runs(comfy: Engine) -> None:
    prepared = comfy.prepare(PARITY["composite-solid-mask"])
    first = comfy.run(prepared, image_batch(1, 24, 18))
    second = comfy.run(prepared, image_batch(1, 24, 18, seed=1))
    assert first.executed == 5 and second.executed == 3  # EmptyImage and SolidMask ran once


def test_an_erroring_node_surfaces_as_an_error(comfy: Engine) -> None:
    workflow = chain(("ImageToMask", {"channel": "alpha"}), ("MaskToImage", {"mask": ["2", 0]}))
    prepared = comfy.prepare(workflow)
    with pytest.raises(NodeExecutionError) as info:
        comfy.run(prepared, image_batch(1, 8, 8))
    assert info.value.node_id == "2" and info.value.class_type == "ImageToMask"
    assert "index 3 is out of bounds" in str(info.value)
    # The engine keeps working after a failed run.
    x = image_batch(1, 8, 8)
    assert torch.equal(images_of(comfy.run(comfy.prepare(INVERT), x)), 1.0 - x)


class _ReturnsNone:
    CATEGORY = "test"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"image": ("IMAGE",)}}

    def run(self, image: torch.Tensor) -> None:
        return None


def test_a_node_returning_none_is_an_error(comfy: Engine) -> None:
    comfy.registry["TestReturnsNone"] = _ReturnsNone  # type: ignore[index]
    try:
        prepared = comfy.prepare(chain(("TestReturnsNone", {})))
        with pytest.raises(NodeExecutionError, match="TestReturnsNone"):
            comfy.run(prepared, image_batch(1, 4, 4))
    finally:
        del comfy.registry["TestReturnsNone"]  # type: ignore[attr-defined]


def test_failing_frames_pass_through_in_a_comfyui_stream(comfy: Engine) -> None:
    workflow = chain(
        ("ImageCrop", {"width": 4, "height": 4, "x": 0, "y": 0}),
        ("ImageBlur", {"blur_radius": 6, "sigma": 1.0}),
    )
    with pytest.raises(WorkflowError) as info:
        WorkflowRunner(comfy, "fails", 16, 16, warmup_frames=1).start(workflow)
    assert info.value.kinds == {"warmup_failed"}
    pipeline = WorkflowRunner(comfy, "ok", 16, 16, warmup_frames=1)
    pipeline.start(INVERT)
    with pytest.raises(WorkflowError):
        pipeline.update(workflow)
    frame = rgb_frame(16, 16)
    assert np.array_equal(pipeline.process([frame])[0].frame, 255 - frame)
    assert pipeline.stats.updates_rejected == 1


def test_validation_lists_unknown_nodes_and_comfyui_problems(comfy: Engine) -> None:
    with pytest.raises(
        WorkflowError, match=r"unknown node type for the comfyui engine: NoSuchNode \(node 2\)"
    ):
        comfy.prepare(chain(("NoSuchNode", {})))
    workflow = {
        "1": {"class_type": "PrimaryInputLoadImage", "inputs": {"image": "x.png"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "missing.png"}},
        "3": {
            "class_type": "ImageBlend",
            "inputs": {
                "image1": ["1", 0],
                "image2": ["2", 0],
                "blend_factor": 0.5,
                "blend_mode": "normal",
            },
        },
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
    }
    with pytest.raises(WorkflowError, match=r"missing\.png"):
        comfy.prepare(workflow)


def test_workspace_files_are_comfyuis_inputs(comfy: Engine) -> None:
    workflow = {
        "1": {"class_type": "PrimaryInputLoadImage", "inputs": {"image": "x.png"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "bg.png"}},
        "3": {
            "class_type": "ImageBlend",
            "inputs": {
                "image1": ["1", 0],
                "image2": ["2", 0],
                "blend_factor": 1.0,
                "blend_mode": "normal",
            },
        },
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
    }
    result = comfy.run(comfy.prepare(workflow), image_batch(1, 12, 8))
    assert torch.allclose(
        images_of(result)[0, 4, 6], torch.tensor([10, 200, 30]) / 255.0, atol=1e-6
    )


def test_text_output_and_batched_streams(comfy: Engine) -> None:
    workflow = chain(("ImageInvert", {}))
    workflow["7"] = {"class_type": "FrameStatistics", "inputs": {"image": ["2", 0], "precision": 3}}
    workflow["8"] = {"class_type": "SaveTextTensor", "inputs": {"data": ["7", 0]}}
    result = comfy.run(comfy.prepare(workflow), torch.zeros(1, 4, 4, 3))
    assert json.loads(result.texts[0])["mean"] == [1.0, 1.0, 1.0]

    streams = [WorkflowRunner(comfy, f"b{i}", 16, 8, warmup_frames=1) for i in range(3)]
    for s in streams:
        s.start(chain(("ImageBlur", {"blur_radius": 2, "sigma": 1.0})))
    frames = [rgb_frame(16, 8, seed=i) for i in range(3)]
    alone = [s.process([f])[0].frame.copy() for s, f in zip(streams, frames, strict=True)]
    together = process_frames(list(zip(streams, frames, strict=True)))
    assert all(np.array_equal(t.frame, a) for t, a in zip(together, alone, strict=True))


def test_image_job_with_progress(comfy: Engine) -> None:
    pixels = rgb_frame(20, 10)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    seen: list[tuple[str, str, int, int]] = []
    result = run_image_job(
        comfy,
        {"image": base64.b64encode(buffer.getvalue()).decode(), "workflow": INVERT},
        progress=lambda *e: seen.append(e),
    )
    out = np.asarray(Image.open(io.BytesIO(result.png)).convert("RGB"))
    assert np.array_equal(out, 255 - pixels)
    assert [e[1] for e in seen] == ["ByocLoadFrame", "ImageInvert", "ByocSaveFrame"]
    assert [(e[2], e[3]) for e in seen] == [(1, 3), (2, 3), (3, 3)]


def test_one_comfyui_engine_per_process(comfy: Engine) -> None:
    from infer.engine.comfyui import ComfyUIEngine

    with pytest.raises(EngineUnavailableError, match="already running"):
        ComfyUIEngine(Path(comfy.workspace))  # type: ignore[attr-defined]
    assert comfy.info()["version"] == "0.0.1" and comfy.info()["tested"] is True
