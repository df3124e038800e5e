"""Checking a rewritten workflow against an engine's node classes before anything runs.

Nodes follow ComfyUI's (V1) contract: ``INPUT_TYPES()`` returns ``{"required": {...},
"optional": {...}}`` where each entry is ``("TYPE", {options})`` or a combo ``([choices],)``;
``RETURN_TYPES`` is a tuple of type names; ``OUTPUT_NODE`` marks outputs. Every problem found is
collected and raised as one ``WorkflowError``, so a half-valid graph never runs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from infer.errors import WorkflowError, WorkflowProblem
from infer.workflow.rewrite import FRAME_INPUT, FRAME_OUTPUT, TEXT_OUTPUT
from infer.workflow.source import Prompt
from ipc.echo import list_some

NodeRegistry = Mapping[str, type]

_MAX_LISTED_CHOICES = 12


@dataclass(frozen=True)
class ValidatedWorkflow:
    """A rewritten workflow that passed validation, with what the engines need to know."""

    prompt: Prompt
    order: tuple[str, ...]
    """Every node that an output depends on (outputs included), dependencies first."""
    frame_inputs: tuple[str, ...]
    frame_output: str | None
    text_outputs: tuple[str, ...]
    frame_dependent: frozenset[str]
    """Nodes whose result depends on the frame (the rest is computed once per workflow)."""
    key: str
    """Digest of the canonical prompt: equal workflows share it (used to batch streams)."""

    @property
    def class_types(self) -> frozenset[str]:
        """The node classes the workflow uses."""
        return frozenset(self.prompt[nid]["class_type"] for nid in self.order)


def is_link(value: Any) -> bool:
    """True for a ``[node_id, output_index]`` link (ComfyUI's rule: a 2-element list)."""
    return isinstance(value, list) and len(value) == 2


def input_specs(cls: type) -> tuple[dict[str, Any], dict[str, Any]]:
    """(required, optional) input specs of a node class."""
    types = cls.INPUT_TYPES()  # type: ignore[attr-defined]
    if not isinstance(types, Mapping):
        raise TypeError("INPUT_TYPES() did not return a dict")
    return dict(types.get("required") or {}), dict(types.get("optional") or {})


def _type_names(t: Any) -> set[str] | None:
    """The set of type names of a spec or return type; None for combos (lists of choices)."""
    if isinstance(t, str):
        return {part.strip() for part in t.split(",")}
    return None


def _types_compatible(expected: Any, received: Any) -> bool:
    exp, rec = _type_names(expected), _type_names(received)
    if exp is None:  # a combo input: fed by a combo or a STRING output
        return rec is None or bool(rec & {"STRING", "*"})
    if rec is None:  # a combo output: its values are strings
        return bool(exp & {"STRING", "*"})
    return "*" in exp or "*" in rec or bool(exp & rec)


def _check_literal(name: str, spec: Any, value: Any) -> tuple[Any, str | None]:
    """Coerce a widget value like ComfyUI does; return (value, problem message or None)."""
    type_ = spec[0] if isinstance(spec, (list, tuple)) and spec else spec
    options = spec[1] if isinstance(spec, (list, tuple)) and len(spec) > 1 else {}
    if not isinstance(options, Mapping):
        options = {}
    if isinstance(type_, (list, tuple)):
        if value not in type_:
            choices = list(type_)
            shown = (
                ", ".join(repr(c) for c in choices)
                if len(choices) <= _MAX_LISTED_CHOICES
                else f"one of {len(choices)} choices"
            )
            return value, f"input '{name}': {value!r} is not one of {shown}"
        return value, None
    try:
        if type_ == "INT":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError("not an integer")
            value = int(value)
        elif type_ == "FLOAT":
            if isinstance(value, bool):
                raise ValueError("not a number")
            value = float(value)
        elif type_ == "STRING":
            if not isinstance(value, (str, int, float)):
                raise ValueError("not a string")
            value = str(value)
        elif type_ == "BOOLEAN":
            if not isinstance(value, bool):
                raise ValueError("not a boolean")
        else:
            return value, (
                f"input '{name}' needs a link to a {type_} output, got the literal {value!r}"
            )
    except (TypeError, ValueError) as exc:
        return value, f"input '{name}': {value!r} is not a valid {type_} ({exc})"
    if "min" in options and value < options["min"]:
        return value, f"input '{name}': {value} is smaller than the minimum {options['min']}"
    if "max" in options and value > options["max"]:
        return value, f"input '{name}': {value} is bigger than the maximum {options['max']}"
    return value, None


def validate_workflow(
    prompt: Prompt, registry: NodeRegistry, *, engine_name: str = "engine"
) -> ValidatedWorkflow:
    """Validate a rewritten prompt against ``registry``; raise one ``WorkflowError`` listing
    unknown node types, missing inputs, bad links, type mismatches, bad values, cycles and
    missing input/output nodes."""
    problems: list[WorkflowProblem] = []
    checked: Prompt = {}

    unknown = sorted(
        ((nid, n["class_type"]) for nid, n in prompt.items() if n["class_type"] not in registry),
        key=lambda item: (item[1], item[0]),
    )
    if unknown:
        names = sorted({cls for _, cls in unknown})
        listing = list_some(
            f"{cls} (node {list_some(nid for nid, c in unknown if c == cls)})" for cls in names
        )
        problems.append(
            WorkflowProblem(
                "unknown_node_type",
                f"unknown node type{'s' if len(names) > 1 else ''} for the {engine_name} "
                f"engine: {listing}",
            )
        )

    specs: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for nid, node in prompt.items():
        cls = registry.get(node["class_type"])
        if cls is None:
            continue
        try:
            specs[nid] = input_specs(cls)
        except Exception as exc:
            problems.append(
                WorkflowProblem(
                    "bad_node_class",
                    f"INPUT_TYPES() failed: {exc}",
                    nid,
                    node["class_type"],
                )
            )

    for nid, node in prompt.items():
        if nid not in specs:
            continue
        class_type = node["class_type"]
        required, optional = specs[nid]
        inputs = dict(node["inputs"])
        for name in required:
            if name not in inputs:
                problems.append(
                    WorkflowProblem(
                        "missing_input", f"required input '{name}' is missing", nid, class_type
                    )
                )
        for name, value in list(inputs.items()):
            spec = required.get(name, optional.get(name))
            if spec is None:
                continue  # ComfyUI ignores inputs a node does not declare; so do we
            if isinstance(value, list):
                problem = _check_link(prompt, registry, name, spec, value)
                if problem:
                    problems.append(WorkflowProblem(problem[0], problem[1], nid, class_type))
                continue
            value, message = _check_literal(name, spec, value)
            if message:
                problems.append(WorkflowProblem("bad_value", message, nid, class_type))
            inputs[name] = value
        checked[nid] = {**node, "inputs": inputs}

    for cycle in _find_cycles(prompt):
        problems.append(
            WorkflowProblem("cycle", "the graph has a cycle: " + " -> ".join([*cycle, cycle[0]]))
        )

    frame_inputs = tuple(sorted(n for n, v in prompt.items() if v["class_type"] == FRAME_INPUT))
    frame_outputs = sorted(n for n, v in prompt.items() if v["class_type"] == FRAME_OUTPUT)
    text_outputs = tuple(sorted(n for n, v in prompt.items() if v["class_type"] == TEXT_OUTPUT))
    if not frame_inputs:
        problems.append(
            WorkflowProblem(
                "no_input",
                "the workflow has no frame input node (LoadTensor, PrimaryInputLoadImage or "
                "a single LoadImage)",
            )
        )
    if not frame_outputs and not text_outputs:
        problems.append(
            WorkflowProblem(
                "no_output",
                "the workflow has no output node (SaveTensor, PreviewImage, SaveImage or "
                "SaveTextTensor)",
            )
        )
    if len(frame_outputs) > 1:
        problems.append(
            WorkflowProblem(
                "multiple_outputs",
                f"{len(frame_outputs)} frame output nodes ({', '.join(frame_outputs)}); a "
                "workflow produces one video output",
            )
        )

    if problems:
        raise WorkflowError(problems)

    output_ids = [
        nid
        for nid, n in checked.items()
        if getattr(registry[n["class_type"]], "OUTPUT_NODE", False)
    ]
    order = _dependency_order(checked, output_ids)
    dependent = _frame_dependent(checked, order, set(frame_inputs))
    canonical = json.dumps(
        {nid: {"class_type": n["class_type"], "inputs": n["inputs"]} for nid, n in checked.items()},
        sort_keys=True,
        default=str,
    )
    return ValidatedWorkflow(
        prompt=checked,
        order=tuple(order),
        frame_inputs=frame_inputs,
        frame_output=frame_outputs[0] if frame_outputs else None,
        text_outputs=text_outputs,
        frame_dependent=frozenset(dependent),
        key=hashlib.sha256(canonical.encode()).hexdigest()[:16],
    )


def _check_link(
    prompt: Prompt, registry: NodeRegistry, name: str, spec: Any, value: list[Any]
) -> tuple[str, str] | None:
    if len(value) != 2:
        return "bad_link", f"input '{name}': a link must be [node_id, output_index]"
    src_id, index = value
    src_id = str(src_id)
    if src_id not in prompt:
        return "bad_link", f"input '{name}' links to node {src_id}, which does not exist"
    if isinstance(index, bool) or not isinstance(index, int):
        return "bad_link", f"input '{name}': output index {index!r} is not an integer"
    src_cls = registry.get(prompt[src_id]["class_type"])
    if src_cls is None:
        return None  # already reported as an unknown node type
    returns = tuple(getattr(src_cls, "RETURN_TYPES", ()))
    if not 0 <= index < len(returns):
        return (
            "bad_link",
            f"input '{name}' links to output {index} of node {src_id} "
            f"({prompt[src_id]['class_type']}), which has {len(returns)} output"
            f"{'' if len(returns) == 1 else 's'}",
        )
    expected = spec[0] if isinstance(spec, (list, tuple)) and spec else spec
    if not _types_compatible(expected, returns[index]):
        return (
            "type_mismatch",
            f"input '{name}' expects {expected} but node {src_id} "
            f"({prompt[src_id]['class_type']}) output {index} is {returns[index]}",
        )
    return None


def _links(node: dict[str, Any]) -> list[str]:
    return [str(v[0]) for v in node["inputs"].values() if is_link(v)]


def _find_cycles(prompt: Prompt) -> list[list[str]]:
    """Cycles among existing nodes (iterative DFS; one cycle reported per strongly linked set)."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    cycles: list[list[str]] = []
    for root in sorted(prompt):
        if root in state:
            continue
        stack: list[tuple[str, list[str]]] = [
            (root, [s for s in _links(prompt[root]) if s in prompt])
        ]
        path = [root]
        state[root] = 1
        while stack:
            nid, pending = stack[-1]
            if not pending:
                state[nid] = 2
                stack.pop()
                path.pop()
                continue
            nxt = pending.pop()
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt) :])
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, [s for s in _links(prompt[nxt]) if s in prompt]))
    return cycles


def _dependency_order(prompt: Prompt, outputs: list[str]) -> list[str]:
    """Post-order from the outputs: every node after the nodes it links to."""
    order: list[str] = []
    seen: set[str] = set()
    for out in sorted(outputs):
        stack: list[tuple[str, bool]] = [(out, False)]
        while stack:
            nid, expanded = stack.pop()
            if expanded:
                if nid not in seen:
                    seen.add(nid)
                    order.append(nid)
                continue
            if nid in seen:
                continue
            stack.append((nid, True))
            for src in reversed(_links(prompt[nid])):
                if src not in seen:
                    stack.append((src, False))
    return order


def _frame_dependent(prompt: Prompt, order: list[str], frame_inputs: set[str]) -> set[str]:
    dependent: set[str] = set()
    for nid in order:
        node = prompt[nid]
        if nid in frame_inputs or node["class_type"] in (FRAME_OUTPUT, TEXT_OUTPUT):
            dependent.add(nid)  # I/O nodes run on every frame
        elif any(src in dependent for src in _links(node)):
            dependent.add(nid)
    return dependent
