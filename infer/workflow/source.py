"""Reading a workflow from what a client sent: a dict, a JSON string, or ComfyStream's list form.

The result is a plain API-format prompt: ``{node_id: {"class_type": str, "inputs": {...}}}``
with string node ids. Nothing here knows about node classes; see ``validate`` for that.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from infer.errors import WorkflowError, WorkflowProblem
from ipc.untrusted_json import UntrustedJsonError, loads_untrusted

Prompt = dict[str, dict[str, Any]]

# The workflow a stream runs when its parameters name none: frames pass through unchanged.
PASSTHROUGH_WORKFLOW: Prompt = {
    "1": {"class_type": "LoadTensor", "inputs": {}},
    "2": {"class_type": "SaveTensor", "inputs": {"images": ["1", 0]}},
}


def _malformed(message: str) -> WorkflowError:
    return WorkflowError(WorkflowProblem("malformed", message))


def parse_workflow(source: Any) -> Prompt:
    """Turn a dict, a JSON string or a one-element list of either into an API-format prompt.

    Returns a deep copy: the caller's object is never modified. Raises ``WorkflowError`` for
    anything that is not a single API-format workflow (UI-format exports get a specific hint).
    """
    if isinstance(source, (bytes, bytearray)):
        source = source.decode("utf-8", errors="replace")
    if isinstance(source, str):
        try:
            source = loads_untrusted(source, what="workflow")
        except UntrustedJsonError as exc:
            raise _malformed(str(exc)) from None
    if isinstance(source, list):
        if not source:
            raise _malformed("the list of workflows is empty")
        if len(source) > 1:
            raise _malformed(
                f"got {len(source)} workflows; a stream or job runs exactly one workflow"
            )
        return parse_workflow(source[0])
    if not isinstance(source, Mapping):
        raise _malformed(f"a workflow must be a JSON object, got {type(source).__name__}")
    if "nodes" in source and "links" in source:
        raise _malformed(
            "this is a UI-format workflow (it has 'nodes' and 'links'); export it from the "
            "ComfyUI editor with 'Save (API Format)'"
        )
    if not source:
        raise _malformed("the workflow has no nodes")
    prompt: Prompt = {}
    problems: list[WorkflowProblem] = []
    for raw_id, node in source.items():
        node_id = str(raw_id)
        if not isinstance(node, Mapping):
            problems.append(
                WorkflowProblem("malformed", "a node must be a JSON object", node_id=node_id)
            )
            continue
        class_type = node.get("class_type")
        if not isinstance(class_type, str) or not class_type:
            problems.append(
                WorkflowProblem("malformed", "the node has no 'class_type'", node_id=node_id)
            )
            continue
        inputs = node.get("inputs", {})
        if not isinstance(inputs, Mapping):
            problems.append(
                WorkflowProblem("malformed", "'inputs' must be a JSON object", node_id, class_type)
            )
            continue
        entry: dict[str, Any] = {
            "class_type": class_type,
            "inputs": {str(k): _normalise_link(v) for k, v in copy.deepcopy(dict(inputs)).items()},
        }
        if isinstance(node.get("_meta"), Mapping):
            entry["_meta"] = copy.deepcopy(dict(node["_meta"]))
        prompt[node_id] = entry
    if problems:
        raise WorkflowError(problems)
    return prompt


def _normalise_link(value: Any) -> Any:
    """Links may name their source with an int id (hand-written JSON); ComfyUI uses strings."""
    if (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], int)
        and not isinstance(value[0], bool)
        and isinstance(value[1], int)
    ):
        return [str(value[0]), value[1]]
    return value


def workflow_from_params(params: Mapping[str, Any], *, default: Any = None) -> Prompt:
    """The workflow named by stream or job parameters: ``prompts`` first, then ``workflow``.

    With neither key present, ``default`` is used when given; otherwise a ``WorkflowError``.
    """
    for key in ("prompts", "workflow"):
        value = params.get(key)
        if value is not None and value != "":
            return parse_workflow(value)
    if default is not None:
        return parse_workflow(default)
    raise _malformed("no workflow given: send 'workflow' (or ComfyStream's 'prompts')")
