"""Validation against the built-in engine's node classes: every kind of problem, all at once."""

from __future__ import annotations

from typing import Any

import pytest

from infer.errors import WorkflowError
from infer.nodes import BUILTIN_NODES
from infer.workflow import load_workflow
from tests.infer.conftest import INVERT, chain


def _problems(prompt: dict[str, Any]) -> WorkflowError:
    with pytest.raises(WorkflowError) as info:
        load_workflow(prompt, BUILTIN_NODES, engine_name="builtin")
    return info.value


def test_valid_workflow_gives_order_io_and_frame_dependence() -> None:
    prompt = {
        "1": {"class_type": "LoadTensor", "inputs": {}},
        "2": {
            "class_type": "EmptyImage",
            "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 255},
        },
        "3": {
            "class_type": "ImageBlend",
            "inputs": {
                "image1": ["1", 0],
                "image2": ["2", 0],
                "blend_factor": 0.5,
                "blend_mode": "normal",
            },
        },
        "4": {"class_type": "SaveTensor", "inputs": {"images": ["3", 0]}},
        "5": {"class_type": "FrameStatistics", "inputs": {"image": ["3", 0]}},
        "6": {"class_type": "SaveTextTensor", "inputs": {"data": ["5", 0]}},
        "7": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},  # feeds no output
    }
    wf = load_workflow(prompt, BUILTIN_NODES)
    assert wf.frame_inputs == ("1",) and wf.frame_output == "4" and wf.text_outputs == ("6",)
    assert "7" not in wf.order
    position = {nid: i for i, nid in enumerate(wf.order)}
    assert position["1"] < position["3"] and position["2"] < position["3"] < position["4"]
    assert position["5"] < position["6"]
    assert "2" not in wf.frame_dependent and {"1", "3", "4", "5", "6"} <= wf.frame_dependent


def test_equal_workflows_share_a_key_and_different_ones_do_not() -> None:
    a = load_workflow(INVERT, BUILTIN_NODES)
    b = load_workflow(dict(reversed(list(INVERT.items()))), BUILTIN_NODES)
    c = load_workflow(chain(("ImageBlur", {"blur_radius": 2, "sigma": 1.0})), BUILTIN_NODES)
    assert a.key == b.key != c.key


def test_unknown_node_types_are_listed_by_name_and_node() -> None:
    prompt = chain(("KSampler", {}), ("CheckpointLoaderSimple", {"ckpt_name": "x"}))
    prompt["50"] = {"class_type": "KSampler", "inputs": {}}
    error = _problems(prompt)
    assert "unknown_node_type" in error.kinds
    message = str(error)
    assert "CheckpointLoaderSimple (node 3)" in message
    assert "KSampler (node 2, 50)" in message
    assert "builtin engine" in message


def test_missing_required_inputs_are_named() -> None:
    error = _problems(chain(("ImageBlur", {"sigma": 1.0})))
    assert error.kinds == {"missing_input"}
    assert error.problems[0].node_id == "2"
    assert "'blur_radius'" in str(error)


@pytest.mark.parametrize(
    ("link", "fragment"),
    [
        (["77", 0], "node 77, which does not exist"),
        (["1", 1], "output 1 of node 1 (ByocLoadFrame), which has 1 output"),
        (["1", "0"], "not an integer"),
        (["1", 0, 0], "must be [node_id, output_index]"),
    ],
)
def test_bad_link_targets(link: list[Any], fragment: str) -> None:
    prompt = chain(("ImageInvert", {}))
    prompt["2"]["inputs"]["image"] = link
    error = _problems(prompt)
    assert error.kinds == {"bad_link"}
    assert fragment in str(error)


def test_type_mismatch_between_linked_nodes() -> None:
    prompt = {
        "1": {"class_type": "LoadTensor", "inputs": {}},
        "2": {"class_type": "ImageToMask", "inputs": {"image": ["1", 0], "channel": "red"}},
        "3": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},
        "4": {"class_type": "SaveTensor", "inputs": {"images": ["3", 0]}},
    }
    error = _problems(prompt)
    assert error.kinds == {"type_mismatch"}
    assert "expects IMAGE but node 2 (ImageToMask) output 0 is MASK" in str(error)


@pytest.mark.parametrize(
    ("inputs", "fragment"),
    [
        ({"blur_radius": 0, "sigma": 1.0}, "smaller than the minimum 1"),
        ({"blur_radius": 40, "sigma": 1.0}, "bigger than the maximum 31"),
        ({"blur_radius": "two", "sigma": 1.0}, "not a valid INT"),
        ({"blur_radius": 1.5, "sigma": 1.0}, "not a valid INT"),
        ({"blur_radius": True, "sigma": 1.0}, "not a valid INT"),
    ],
)
def test_bad_literal_values(inputs: dict[str, Any], fragment: str) -> None:
    error = _problems(chain(("ImageBlur", inputs)))
    assert error.kinds == {"bad_value"}
    assert fragment in str(error)


def test_combo_value_not_in_list_and_literal_where_a_link_is_needed() -> None:
    prompt = chain(("ImageFlip", {"flip_method": "diagonal"}))
    assert "not one of 'x-axis: vertically', 'y-axis: horizontally'" in str(_problems(prompt))
    prompt = chain(("ImageInvert", {}))
    prompt["2"]["inputs"]["image"] = 0.5
    assert "needs a link to a IMAGE output" in str(_problems(prompt))


def test_literals_are_coerced_like_comfyui() -> None:
    wf = load_workflow(chain(("ImageBlur", {"blur_radius": 2.0, "sigma": 1})), BUILTIN_NODES)
    assert wf.prompt["2"]["inputs"]["blur_radius"] == 2 and isinstance(
        wf.prompt["2"]["inputs"]["blur_radius"], int
    )
    assert isinstance(wf.prompt["2"]["inputs"]["sigma"], float)


def test_cycles_are_reported_with_their_path() -> None:
    prompt = {
        "1": {"class_type": "LoadTensor", "inputs": {}},
        "2": {
            "class_type": "ImageBlend",
            "inputs": {
                "image1": ["1", 0],
                "image2": ["3", 0],
                "blend_factor": 0.5,
                "blend_mode": "normal",
            },
        },
        "3": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},
        "4": {"class_type": "SaveTensor", "inputs": {"images": ["3", 0]}},
    }
    error = _problems(prompt)
    assert error.kinds == {"cycle"}
    assert "cycle" in str(error) and "2" in str(error) and "3" in str(error)


def test_no_input_node() -> None:
    prompt = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0},
        },
        "2": {"class_type": "SaveTensor", "inputs": {"images": ["1", 0]}},
    }
    assert _problems(prompt).kinds == {"no_input"}


def test_no_output_node() -> None:
    prompt = chain(("ImageInvert", {}), save=False)
    assert _problems(prompt).kinds == {"no_output"}


def test_two_frame_outputs_are_rejected() -> None:
    prompt = chain(("ImageInvert", {}))
    prompt["98"] = {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}
    assert _problems(prompt).kinds == {"multiple_outputs"}


def test_run_id_is_owned_by_the_engine() -> None:
    prompt = {
        "1": {"class_type": "LoadTensor", "inputs": {}},
        "2": {"class_type": "FrameStatistics", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "ByocSaveFrame", "inputs": {"images": ["1", 0], "run_id": ["2", 0]}},
    }
    wf = load_workflow(prompt, BUILTIN_NODES)
    assert wf.prompt["3"]["inputs"]["run_id"] == ""


def test_all_problems_come_in_one_error() -> None:
    prompt = {
        "1": {"class_type": "Nope", "inputs": {}},
        "2": {"class_type": "ImageBlur", "inputs": {"image": ["9", 0], "blur_radius": 99}},
    }
    error = _problems(prompt)
    assert error.kinds == {
        "unknown_node_type",
        "bad_link",
        "missing_input",
        "bad_value",
        "no_input",
        "no_output",
    }
    body = error.to_dict()
    problems = body["problems"]
    assert body["status_code"] == 400 and isinstance(problems, list)
    assert len(problems) == len(error.problems)
