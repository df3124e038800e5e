"""Editor and ComfyStream I/O nodes become the project's frame and text nodes."""

from __future__ import annotations

import pytest

from infer.errors import WorkflowError
from infer.workflow import FRAME_INPUT, FRAME_OUTPUT, TEXT_OUTPUT, rewrite_io_nodes


def _types(prompt: dict) -> dict[str, str]:
    return {nid: node["class_type"] for nid, node in prompt.items()}


def test_editor_export_with_load_and_preview_image() -> None:
    prompt = {
        "10": {"class_type": "LoadImage", "inputs": {"image": "example.png", "upload": "image"}},
        "11": {"class_type": "ImageInvert", "inputs": {"image": ["10", 0]}},
        "12": {"class_type": "PreviewImage", "inputs": {"images": ["11", 0]}},
        "13": {"class_type": "SaveImage", "inputs": {"images": ["11", 0], "filename_prefix": "x"}},
    }
    out = rewrite_io_nodes(prompt)
    assert _types(out) == {
        "10": FRAME_INPUT,
        "11": "ImageInvert",
        "12": FRAME_OUTPUT,
        "13": FRAME_OUTPUT,
    }
    assert out["10"]["inputs"] == {"run_id": ""}
    assert out["13"]["inputs"] == {"images": ["11", 0], "run_id": ""}
    assert prompt["10"]["class_type"] == "LoadImage"  # the input is not modified


def test_primary_input_wins_over_other_load_images() -> None:
    prompt = {
        "1": {"class_type": "PrimaryInputLoadImage", "inputs": {"image": "a.png"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "background.png"}},
        "3": {"class_type": "ImageBlend", "inputs": {"image1": ["1", 0], "image2": ["2", 0]}},
        "4": {"class_type": "SaveTensor", "inputs": {"images": ["3", 0]}},
    }
    out = rewrite_io_nodes(prompt)
    assert out["1"]["class_type"] == FRAME_INPUT
    assert out["2"]["class_type"] == "LoadImage"  # stays: ComfyUI loads it from the workspace


def test_two_load_images_without_a_primary_input_are_ambiguous() -> None:
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "b.png"}},
    }
    with pytest.raises(WorkflowError) as info:
        rewrite_io_nodes(prompt)
    assert info.value.kinds == {"ambiguous_input"}
    assert "PrimaryInputLoadImage" in str(info.value)


def test_comfystream_tensor_nodes_and_both_text_input_names() -> None:
    prompt = {
        "1": {"class_type": "LoadTensor", "inputs": {}},
        "2": {
            "class_type": "SaveTextTensor",
            "inputs": {"data": ["5", 0], "remove_linebreaks": False},
        },
        "3": {"class_type": "SaveTextTensor", "inputs": {"text": ["5", 0]}},
        "4": {"class_type": "SaveTensor", "inputs": {"images": ["1", 0]}},
    }
    out = rewrite_io_nodes(prompt)
    assert _types(out) == {"1": FRAME_INPUT, "2": TEXT_OUTPUT, "3": TEXT_OUTPUT, "4": FRAME_OUTPUT}
    assert out["2"]["inputs"] == {"data": ["5", 0], "remove_linebreaks": False, "run_id": ""}
    assert out["3"]["inputs"] == {"data": ["5", 0], "run_id": ""}
