"""ComfyUI API-format workflows: reading, rewriting I/O nodes, validating.

``load_workflow(source, registry)`` does all three and is what engines call.
"""

from __future__ import annotations

from typing import Any

from infer.errors import WorkflowError, WorkflowProblem
from infer.workflow.rewrite import (
    FRAME_INPUT,
    FRAME_OUTPUT,
    RUN_ID_INPUT,
    TEXT_OUTPUT,
    rewrite_io_nodes,
)
from infer.workflow.source import PASSTHROUGH_WORKFLOW, Prompt, parse_workflow, workflow_from_params
from infer.workflow.validate import NodeRegistry, ValidatedWorkflow, is_link, validate_workflow

__all__ = [
    "FRAME_INPUT",
    "FRAME_OUTPUT",
    "PASSTHROUGH_WORKFLOW",
    "RUN_ID_INPUT",
    "TEXT_OUTPUT",
    "NodeRegistry",
    "Prompt",
    "ValidatedWorkflow",
    "WorkflowError",
    "WorkflowProblem",
    "is_link",
    "load_workflow",
    "parse_workflow",
    "rewrite_io_nodes",
    "validate_workflow",
    "workflow_from_params",
]


def load_workflow(
    source: Any, registry: NodeRegistry, *, engine_name: str = "engine"
) -> ValidatedWorkflow:
    """Parse (dict, JSON string or one-element list), rewrite I/O nodes and validate."""
    return validate_workflow(
        rewrite_io_nodes(parse_workflow(source)), registry, engine_name=engine_name
    )
