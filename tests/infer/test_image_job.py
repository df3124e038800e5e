"""The comfystream-image job on the built-in engine (real ComfyUI: tests/infer/engine)."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import numpy as np
import pytest
from PIL import Image

from infer.engine.builtin import BuiltinEngine
from infer.image_job import ImageJobError, ImageJobLimits, run_image_job
from tests.infer.conftest import INVERT, rgb_frame


def _encode(pixels: np.ndarray, fmt: str = "PNG", **kw: Any) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **kw)
    return base64.b64encode(buffer.getvalue()).decode()


def _decode(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


def test_png_in_inverted_png_out(engine: BuiltinEngine) -> None:
    pixels = rgb_frame(40, 30)
    body = json.dumps({"image": _encode(pixels), "workflow": INVERT}).encode()
    result = run_image_job(engine, body)
    answer = result.to_json()
    assert (answer["width"], answer["height"]) == (40, 30) and answer["elapsed_ms"] > 0
    assert np.array_equal(_decode(answer["image"]), 255 - pixels)
    assert result.png.startswith(b"\x89PNG") and "text" not in answer


def test_jpeg_data_url_prompts_list_and_json_string_workflow(engine: BuiltinEngine) -> None:
    pixels = np.full((16, 24, 3), 200, np.uint8)
    url = "data:image/jpeg;base64," + _encode(pixels, "JPEG", quality=95)
    result = run_image_job(engine, {"image": url, "prompts": [json.dumps(INVERT)]})
    assert np.abs(_decode(result.to_json()["image"]).astype(int) - 55).max() <= 2


def test_progress_is_reported_per_node_and_text_is_returned(engine: BuiltinEngine) -> None:
    workflow = dict(INVERT)
    workflow["7"] = {"class_type": "FrameStatistics", "inputs": {"image": ["2", 0]}}
    workflow["8"] = {"class_type": "SaveTextTensor", "inputs": {"data": ["7", 0]}}
    seen: list[tuple[str, str, int, int]] = []
    result = run_image_job(
        engine,
        {"image": _encode(np.zeros((4, 4, 3), np.uint8)), "workflow": workflow},
        progress=lambda *event: seen.append(event),
    )
    assert [e[2] for e in seen] == list(range(1, len(seen) + 1)) and {e[3] for e in seen} == {5}
    assert [e[1] for e in seen].count("ImageInvert") == 1
    assert json.loads(result.to_json()["text"][0])["mean"] == [1.0, 1.0, 1.0]


def test_output_size_follows_the_workflow(engine: BuiltinEngine) -> None:
    workflow = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "ignored.png"}},
        "2": {
            "class_type": "ImageScale",
            "inputs": {
                "image": ["1", 0],
                "upscale_method": "bilinear",
                "width": 10,
                "height": 0,
                "crop": "disabled",
            },
        },
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }
    answer = run_image_job(
        engine, {"image": _encode(rgb_frame(40, 20)), "workflow": workflow}
    ).to_json()
    assert (answer["width"], answer["height"]) == (10, 5)


@pytest.mark.parametrize(
    ("body", "kind", "fragment"),
    [
        (b"{oops", "bad_json", "not valid JSON"),
        (b"[1]", "bad_json", "JSON object"),
        ({"workflow": INVERT}, "bad_request", "missing 'image'"),
        ({"image": "AAAA"}, "bad_workflow", "missing 'workflow'"),
        ({"image": "not base64!!", "workflow": INVERT}, "bad_image", "not valid base64"),
        ({"image": "", "workflow": INVERT}, "bad_image", "non-empty"),
        (
            {"image": base64.b64encode(b"hello").decode(), "workflow": INVERT},
            "bad_image",
            "not a readable PNG or JPEG",
        ),
        ({"image": "data:image/png,abc", "workflow": INVERT}, "bad_image", "base64-encoded"),
    ],
)
def test_bad_requests_are_400(engine: BuiltinEngine, body: Any, kind: str, fragment: str) -> None:
    with pytest.raises(ImageJobError) as info:
        run_image_job(engine, body)
    assert info.value.status_code == 400 and info.value.kind == kind
    assert fragment in str(info.value)


def test_other_image_formats_are_rejected(engine: BuiltinEngine) -> None:
    with pytest.raises(ImageJobError, match="unsupported image format GIF"):
        run_image_job(engine, {"image": _encode(rgb_frame(4, 4), "GIF"), "workflow": INVERT})


def test_oversize_images_are_rejected_before_decoding(engine: BuiltinEngine) -> None:
    limits = ImageJobLimits(max_width=32, max_height=32)
    with pytest.raises(ImageJobError) as info:
        run_image_job(
            engine, {"image": _encode(rgb_frame(33, 8)), "workflow": INVERT}, limits=limits
        )
    assert info.value.status_code == 400 and info.value.kind == "too_large"
    assert "33x8 exceeds the limit of 32x32" in str(info.value)
    with pytest.raises(ImageJobError) as info:
        run_image_job(engine, b"x" * 100, limits=ImageJobLimits(max_request_bytes=10))
    assert info.value.status_code == 413


def test_invalid_workflows_are_400_with_the_problems(engine: BuiltinEngine) -> None:
    workflow = {
        "1": {"class_type": "LoadTensor", "inputs": {}},
        "2": {"class_type": "KSampler", "inputs": {}},
    }
    with pytest.raises(ImageJobError) as info:
        run_image_job(engine, {"image": _encode(rgb_frame(4, 4)), "workflow": workflow})
    assert info.value.status_code == 400 and info.value.kind == "bad_workflow"
    assert "KSampler (node 2)" in str(info.value) and "no output node" in str(info.value)
    assert info.value.to_dict()["status_code"] == 400


def test_a_failing_node_is_a_500_with_the_node(engine: BuiltinEngine) -> None:
    workflow = {
        "1": {"class_type": "LoadTensor", "inputs": {}},
        "2": {"class_type": "ImageToMask", "inputs": {"image": ["1", 0], "channel": "alpha"}},
        "3": {"class_type": "MaskToImage", "inputs": {"mask": ["2", 0]}},
        "4": {"class_type": "SaveTensor", "inputs": {"images": ["3", 0]}},
    }
    with pytest.raises(ImageJobError) as info:
        run_image_job(engine, {"image": _encode(rgb_frame(4, 4)), "workflow": workflow})
    assert info.value.status_code == 500 and "node 2 (ImageToMask)" in str(info.value)
