"""Errors raised by the inference library.

Every error a caller may want to turn into an HTTP status carries ``status_code``: 400 for what
the client sent (a workflow, an image), 500 for a failure while running, 503 for a missing engine.
"""

from __future__ import annotations

from dataclasses import dataclass

from ipc.echo import MAX_LISTED_ITEMS, clip_text, list_some

MAX_LISTED_PROBLEMS = 2 * MAX_LISTED_ITEMS


class InferError(Exception):
    """Base class of the errors raised by ``infer``."""

    status_code = 500


@dataclass(frozen=True)
class WorkflowProblem:
    """One thing wrong with a workflow; ``kind`` is a stable machine-readable name."""

    kind: str
    message: str
    node_id: str | None = None
    class_type: str | None = None

    def describe(self) -> str:
        """The problem as one line, prefixed with the node it concerns."""
        if self.node_id is None:
            return self.message
        where = f"node {self.node_id}"
        if self.class_type:
            where += f" ({self.class_type})"
        return f"{where}: {self.message}"

    def to_dict(self) -> dict[str, str | None]:
        """JSON-able form (for an error body)."""
        return {
            "kind": self.kind,
            "message": self.message,
            "node_id": self.node_id,
            "class_type": self.class_type,
        }


class WorkflowError(InferError):
    """A workflow that cannot run: malformed, invalid for the engine, or failing its warm-up.

    All problems found are collected in ``problems``; ``str(error)`` lists them on one line.
    """

    status_code = 400

    def __init__(self, problems: list[WorkflowProblem] | WorkflowProblem | str) -> None:
        if isinstance(problems, str):
            problems = [WorkflowProblem("invalid_workflow", problems)]
        elif isinstance(problems, WorkflowProblem):
            problems = [problems]
        self.problems: tuple[WorkflowProblem, ...] = tuple(problems)
        super().__init__(self._format())

    def _format(self) -> str:
        lines = [p.describe() for p in self.problems]
        if len(lines) == 1:
            return clip_text(f"invalid workflow: {lines[0]}")
        listed = list_some(lines, sep="; ")
        return clip_text(f"invalid workflow ({len(lines)} problems): {listed}")

    @property
    def kinds(self) -> set[str]:
        """The kinds of all problems (handy for callers and tests)."""
        return {p.kind for p in self.problems}

    def to_dict(self) -> dict[str, object]:
        """JSON error body in the project's shape, with the problem list added."""
        return {
            "error": str(self),
            "status_code": self.status_code,
            "problems": [p.to_dict() for p in self.problems[:MAX_LISTED_PROBLEMS]],
        }


class NodeExecutionError(InferError):
    """A node raised (or, in real ComfyUI, reported an error) while a workflow ran."""

    def __init__(self, node_id: str, class_type: str, message: str) -> None:
        self.node_id = node_id
        self.class_type = class_type
        self.detail = message
        super().__init__(f"node {node_id} ({class_type}) failed: {message}")


class EngineUnavailableError(InferError):
    """The requested engine cannot be started (e.g. ``comfyui`` without ComfyUI installed)."""

    status_code = 503
