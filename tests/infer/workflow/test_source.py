"""Reading workflows from dicts, JSON strings and ComfyStream's list form."""

from __future__ import annotations

import json

import pytest

from infer.errors import WorkflowError
from infer.workflow import PASSTHROUGH_WORKFLOW, parse_workflow, workflow_from_params
from tests.infer.conftest import INVERT


def test_dict_json_string_and_list_give_the_same_prompt() -> None:
    as_dict = parse_workflow(INVERT)
    assert parse_workflow(json.dumps(INVERT)) == as_dict
    assert parse_workflow([INVERT]) == as_dict
    assert parse_workflow([json.dumps(INVERT)]) == as_dict
    assert parse_workflow(json.dumps(INVERT).encode()) == as_dict


def test_parse_copies_and_never_mutates_the_input() -> None:
    source = {"1": {"class_type": "LoadTensor", "inputs": {}, "_meta": {"title": "in"}}}
    parsed = parse_workflow(source)
    parsed["1"]["inputs"]["x"] = 1
    assert source["1"]["inputs"] == {}
    assert parsed["1"]["_meta"] == {"title": "in"}


def test_integer_node_ids_in_links_become_strings() -> None:
    parsed = parse_workflow(
        {
            1: {"class_type": "LoadTensor", "inputs": {}},
            2: {"class_type": "ImageInvert", "inputs": {"image": [1, 0]}},
        }
    )
    assert set(parsed) == {"1", "2"}
    assert parsed["2"]["inputs"]["image"] == ["1", 0]


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ([], "empty"),
        ([INVERT, INVERT], "exactly one workflow"),
        (42, "must be a JSON object"),
        ({}, "no nodes"),
        ({"nodes": [], "links": []}, "UI-format"),
        ({"1": "x"}, "must be a JSON object"),
        ({"1": {"inputs": {}}}, "no 'class_type'"),
        ({"1": {"class_type": "A", "inputs": [1]}}, "'inputs' must be a JSON object"),
    ],
)
def test_malformed_workflows_are_rejected_with_a_reason(source: object, fragment: str) -> None:
    with pytest.raises(WorkflowError) as info:
        parse_workflow(source)
    assert fragment in str(info.value)
    assert info.value.status_code == 400
    assert info.value.kinds == {"malformed"}


def test_params_prefer_prompts_then_workflow_then_default() -> None:
    other = {"9": {"class_type": "LoadTensor", "inputs": {}}}
    assert workflow_from_params({"prompts": [INVERT], "workflow": other}) == parse_workflow(INVERT)
    assert workflow_from_params({"workflow": json.dumps(other)}) == parse_workflow(other)
    assert workflow_from_params({}, default=PASSTHROUGH_WORKFLOW) == parse_workflow(
        PASSTHROUGH_WORKFLOW
    )
    with pytest.raises(WorkflowError, match="no workflow given"):
        workflow_from_params({"prompts": ""})
