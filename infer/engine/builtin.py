"""The built-in engine: a torch executor of ComfyUI API-format workflows, no ComfyUI needed.

It keeps ComfyUI's execution model: one node instance per node id, inputs that are literals or
``[node_id, output_index]`` links, dependency order from the output nodes. The subgraph that does
not depend on the frame (``EmptyImage``, ``SolidMask``, ...) runs once per prepared workflow and
is reused; only the frame-dependent nodes run per batch.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from infer.engine.base import (
    Engine,
    PreparedWorkflow,
    ProgressCallback,
    RunResult,
    default_device,
)
from infer.errors import NodeExecutionError, WorkflowError, WorkflowProblem
from infer.exchange import EXCHANGE
from infer.nodes import BUILTIN_NODES, is_batch_independent
from infer.nodes.device import using_device
from infer.workflow import RUN_ID_INPUT, NodeRegistry, ValidatedWorkflow, is_link
from infer.workflow.validate import input_specs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Step:
    node_id: str
    class_type: str
    call: Callable[..., Any]
    literals: Mapping[str, Any]
    links: tuple[tuple[str, str, int], ...]
    returns: int
    takes_run_id: bool


class BuiltinPrepared(PreparedWorkflow):
    """A workflow compiled into a list of steps for ``BuiltinEngine``."""

    def __init__(
        self,
        workflow: ValidatedWorkflow,
        engine: BuiltinEngine,
        constant_steps: list[_Step],
        frame_steps: list[_Step],
    ) -> None:
        batchable = not workflow.text_outputs and all(
            is_batch_independent(name, engine.registry[name]) for name in workflow.class_types
        )
        super().__init__(workflow, engine, batchable=batchable)
        self.constant_steps = constant_steps
        self.frame_steps = frame_steps
        self.constants: dict[str, tuple[Any, ...]] | None = None


class BuiltinEngine(Engine):
    """Runs workflows made of ``infer.nodes`` (or any given node classes) with torch."""

    name = "builtin"
    warmup_frames = 1
    """Nothing to compile or autotune: one frame proves the workflow runs and tells its output
    size, and every frame more only delays the stream's first output."""

    def __init__(
        self, device: torch.device | str | None = None, nodes: Mapping[str, type] | None = None
    ) -> None:
        super().__init__(torch.device(device) if device is not None else default_device())
        self._nodes: dict[str, type] = dict(nodes if nodes is not None else BUILTIN_NODES)
        self._lock = threading.Lock()

    @property
    def registry(self) -> NodeRegistry:
        return self._nodes

    def info(self) -> dict[str, Any]:
        return {**super().info(), "version": "builtin"}

    def _compile(self, workflow: ValidatedWorkflow) -> BuiltinPrepared:
        problems = []
        constant_steps: list[_Step] = []
        frame_steps: list[_Step] = []
        for nid in workflow.order:
            node = workflow.prompt[nid]
            cls = self._nodes[node["class_type"]]
            if getattr(cls, "INPUT_IS_LIST", False) or any(getattr(cls, "OUTPUT_IS_LIST", ())):
                problems.append(
                    WorkflowProblem(
                        "unsupported_node",
                        "list inputs/outputs are not supported by the built-in engine",
                        nid,
                        node["class_type"],
                    )
                )
                continue
            step = self._step(nid, node, cls)
            (frame_steps if nid in workflow.frame_dependent else constant_steps).append(step)
        if problems:
            raise WorkflowError(problems)
        return BuiltinPrepared(workflow, self, constant_steps, frame_steps)

    @staticmethod
    def _step(nid: str, node: dict[str, Any], cls: type) -> _Step:
        required, optional = input_specs(cls)
        declared = {**required, **optional}
        literals: dict[str, Any] = {}
        links: list[tuple[str, str, int]] = []
        takes_run_id = False
        for name, value in node["inputs"].items():
            if name not in declared:
                continue
            if name == RUN_ID_INPUT:
                takes_run_id = True
            elif is_link(value):
                links.append((name, str(value[0]), int(value[1])))
            else:
                literals[name] = value
        instance = cls()
        return _Step(
            node_id=nid,
            class_type=node["class_type"],
            call=getattr(instance, cls.FUNCTION),  # type: ignore[attr-defined]
            literals=literals,
            links=tuple(links),
            returns=len(getattr(cls, "RETURN_TYPES", ())),
            takes_run_id=takes_run_id,
        )

    def run(
        self,
        prepared: PreparedWorkflow,
        images: torch.Tensor,
        *,
        progress: ProgressCallback | None = None,
    ) -> RunResult:
        self._check_prepared(prepared)
        assert isinstance(prepared, BuiltinPrepared)
        with self._lock, torch.inference_mode(), using_device(self.device):
            slot = EXCHANGE.open(images, prefix="builtin")
            try:
                outputs: dict[str, tuple[Any, ...]] = {}
                if prepared.constants is None:
                    steps = prepared.constant_steps + prepared.frame_steps
                else:
                    outputs.update(prepared.constants)
                    steps = prepared.frame_steps
                total = len(steps)
                for index, step in enumerate(steps, 1):
                    outputs[step.node_id] = self._execute(step, outputs, slot.run_id)
                    if progress is not None:
                        progress(step.node_id, step.class_type, index, total)
                if prepared.constants is None:
                    prepared.constants = {
                        s.node_id: outputs[s.node_id] for s in prepared.constant_steps
                    }
            finally:
                EXCHANGE.close(slot.run_id)
        return RunResult(images=slot.output, texts=slot.texts, executed=total)

    @staticmethod
    def _execute(step: _Step, outputs: dict[str, tuple[Any, ...]], run_id: str) -> tuple[Any, ...]:
        kwargs = dict(step.literals)
        for name, src, index in step.links:
            kwargs[name] = outputs[src][index]
        if step.takes_run_id:
            kwargs[RUN_ID_INPUT] = run_id
        try:
            result = step.call(**kwargs)
        except Exception as exc:
            raise NodeExecutionError(
                step.node_id, step.class_type, f"{type(exc).__name__}: {exc}"
            ) from exc
        if result is None:
            raise NodeExecutionError(step.node_id, step.class_type, "the node returned nothing")
        if isinstance(result, dict):
            result = result.get("result", ())
        result = tuple(result)
        if len(result) < step.returns:
            raise NodeExecutionError(
                step.node_id,
                step.class_type,
                f"returned {len(result)} values for {step.returns} declared outputs",
            )
        return result
