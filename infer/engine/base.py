"""What every inference engine provides: prepare a workflow once, run it on frame batches."""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from infer.workflow import NodeRegistry, ValidatedWorkflow, load_workflow
from infer.workflow.allocation import AllocationLimits, check_allocation

ProgressCallback = Callable[[str, str, int, int], None]
"""Called once per executed node: ``(node_id, class_type, index, total)``, index from 1."""


@dataclass
class RunResult:
    """What one run produced."""

    images: torch.Tensor | None
    """The frame output, ``[B, H, W, 3]`` float32 on the engine's device; ``None`` when the
    workflow has no frame output."""
    texts: list[str] = field(default_factory=list)
    """Strings from the text output nodes, in execution order."""
    executed: int = 0
    """Number of nodes executed (cached frame-independent nodes are not counted)."""


class PreparedWorkflow:
    """A validated workflow compiled for one engine; reusable for any number of runs."""

    def __init__(self, workflow: ValidatedWorkflow, engine: Engine, *, batchable: bool) -> None:
        self.workflow = workflow
        self.engine = engine
        self.batchable = batchable
        """True when frames of several streams may run as one batch (see ``infer.batching``)."""

    @property
    def key(self) -> str:
        """Equal for equal workflows (prompt digest)."""
        return self.workflow.key

    @property
    def has_frame_output(self) -> bool:
        return self.workflow.frame_output is not None

    @property
    def has_text_output(self) -> bool:
        return bool(self.workflow.text_outputs)


class Engine(abc.ABC):
    """An executor of ComfyUI API-format workflows on ``[B, H, W, 3]`` float image batches.

    ``run`` is blocking and thread-safe (runs are serialised); call it from a worker thread,
    not from an event loop.
    """

    name: str = "engine"
    warmup_frames: int = 3
    """Dummy frames a stream's workflow runs before it goes live: enough for lazy loading and
    kernel autotuning to be over, so the first live frames are not slow ones."""
    allocation_limits: AllocationLimits = AllocationLimits()
    """What one node may allocate; the worker sets it from the runner's settings."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    @property
    @abc.abstractmethod
    def registry(self) -> NodeRegistry:
        """The node classes this engine runs, by ``class_type``."""

    def prepare(self, source: Any) -> PreparedWorkflow:
        """Parse, rewrite and validate a workflow (dict, JSON string or one-element list) and
        compile it for this engine. Raises ``WorkflowError`` (a 400) with every problem found."""
        workflow = load_workflow(source, self.registry, engine_name=self.name)
        check_allocation(workflow.prompt, self.allocation_limits)
        return self._compile(workflow)

    @abc.abstractmethod
    def _compile(self, workflow: ValidatedWorkflow) -> PreparedWorkflow: ...

    @abc.abstractmethod
    def run(
        self,
        prepared: PreparedWorkflow,
        images: torch.Tensor,
        *,
        progress: ProgressCallback | None = None,
    ) -> RunResult:
        """Run ``prepared`` on a batch ``[B, H, W, 3]`` (float32, [0, 1], on ``self.device``).

        Raises ``NodeExecutionError`` when a node fails; nothing is half-applied.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the engine holds (threads, models)."""

    def info(self) -> dict[str, Any]:
        """Name, version and device, for logs and health reports."""
        return {"engine": self.name, "device": str(self.device), "nodes": len(self.registry)}

    def _check_prepared(self, prepared: PreparedWorkflow) -> None:
        if prepared.engine is not self:
            raise ValueError("this workflow was prepared by another engine")

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
