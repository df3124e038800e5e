"""Per-stream workflow shaping in the infer worker: passthrough detection and output sizing."""

from __future__ import annotations

from infer.stream import is_passthrough, stream_workflow

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
