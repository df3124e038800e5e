"""The real-ComfyUI engine: ComfyUI's embedded client, in this process, on live frames.

ComfyUI keeps process-global state (settings, device, model cache, node table), so a process has
at most one such engine. It owns a thread running a private asyncio loop; the client lives on
that loop and executes prompts on its own worker thread. ``run`` (blocking, thread-safe) puts the
frame batch in a per-run slot of ``infer.exchange``, writes the run's key into the prompt's I/O
nodes, queues a fresh copy of the prompt and waits for that run's future; the project's frame
nodes (registered in ComfyUI's node table) read and write the slot. Only ComfyUI 0.0.1 is tested
here; version differences live in ``comfyui_compat``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import uuid
from collections.abc import Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import torch

from infer.engine import comfyui_compat as compat
from infer.engine.base import Engine, PreparedWorkflow, ProgressCallback, RunResult, default_device
from infer.errors import (
    EngineUnavailableError,
    InferError,
    NodeExecutionError,
    WorkflowError,
    WorkflowProblem,
)
from infer.exchange import EXCHANGE
from infer.nodes import COMFYUI_COMPATIBLE_NODES, IO_NODES, PROJECT_NODES, is_batch_independent
from infer.workflow import RUN_ID_INPUT, NodeRegistry, Prompt, ValidatedWorkflow

log = logging.getLogger(__name__)

_process_lock = threading.Lock()
_active: ComfyUIEngine | None = None
_first_workspace: str | None = None


class _ProgressRouter:
    """ComfyUI's progress sink (``ExecutorToClientProgress``), routing events per prompt id."""

    def __init__(self) -> None:
        self.client_id = "byoc-infer"
        self.last_node_id: str | None = None
        self.last_prompt_id: str | None = None
        self.receive_all_progress_notifications = False
        self._lock = threading.Lock()
        self._runs: dict[str, _RunProgress] = {}

    def open(self, prompt_id: str, run: _RunProgress) -> None:
        with self._lock:
            self._runs[prompt_id] = run

    def close(self, prompt_id: str) -> None:
        with self._lock:
            self._runs.pop(prompt_id, None)

    def send_sync(self, event: Any, data: Any, sid: str | None = None) -> None:
        if not isinstance(data, dict):
            return
        with self._lock:
            run = self._runs.get(str(data.get("prompt_id")))
        if run is not None:
            run.on_event(event, data)

    def send(self, *args: Any, **kwargs: Any) -> None:
        pass

    def queue_updated(self) -> None:
        pass


class _RunProgress:
    """Counts a run's executed nodes and forwards them to the caller's progress callback."""

    def __init__(self, prompt: Prompt, order: tuple[str, ...], callback: ProgressCallback | None):
        self.prompt = prompt
        self.needed = set(order)
        self.callback = callback
        self.total = len(order)
        self.executed = 0

    def on_event(self, event: Any, data: dict[str, Any]) -> None:
        if event == "execution_cached":
            cached = {str(n) for n in data.get("nodes", [])}
            self.total = len(self.needed - cached)
        elif event == "executing" and data.get("node") is not None:
            node_id = str(data["node"])
            self.executed += 1
            if self.callback is not None:
                class_type = self.prompt.get(node_id, {}).get("class_type", "?")
                self.callback(node_id, class_type, self.executed, max(self.total, self.executed))


class ComfyUIPrepared(PreparedWorkflow):
    """A workflow validated by us and by ComfyUI; each run sends a fresh copy of ``prompt``."""

    def __init__(self, workflow: ValidatedWorkflow, engine: ComfyUIEngine) -> None:
        batchable = not workflow.text_outputs and all(
            is_batch_independent(name, engine.registry[name]) for name in workflow.class_types
        )
        super().__init__(workflow, engine, batchable=batchable)
        self.io_nodes = tuple(
            nid for nid, node in workflow.prompt.items() if node["class_type"] in IO_NODES
        )

    def fresh_prompt(self, run_id: str) -> Prompt:
        """A new prompt for one run (ComfyUI writes into the prompt it is given)."""
        prompt: Prompt = {}
        for nid, node in self.workflow.prompt.items():
            inputs = {k: list(v) if isinstance(v, list) else v for k, v in node["inputs"].items()}
            if nid in self.io_nodes:
                inputs[RUN_ID_INPUT] = run_id
            prompt[nid] = {"class_type": node["class_type"], "inputs": inputs}
        return prompt


class ComfyUIEngine(Engine):
    """Runs workflows with the installed ComfyUI (all its nodes, custom nodes and models)."""

    name = "comfyui"

    def __init__(
        self,
        workspace: str | os.PathLike[str],
        *,
        device: torch.device | str | None = None,
        configuration: Mapping[str, Any] | None = None,
        start_timeout: float = 300.0,
        run_timeout: float = 300.0,
    ) -> None:
        super().__init__(torch.device(device) if device is not None else default_device())
        self.workspace = os.path.realpath(os.fspath(workspace))
        self.run_timeout = run_timeout
        self.version = "unknown"
        self.fill_ins: list[str] = []
        self._overrides = dict(configuration or {})
        self._nodes: dict[str, type] = {}
        self._router = _ProgressRouter()
        self._client: Any = None
        self._run_lock: asyncio.Lock | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="comfyui-engine", daemon=True
        )
        self._closed = False
        self._claim_process()
        try:
            self._thread.start()
            self._call(self._start(), start_timeout)
        except BaseException:
            self.close()
            raise

    # -- lifecycle ----------------------------------------------------------------------------

    def _claim_process(self) -> None:
        global _active, _first_workspace
        with _process_lock:
            if _active is not None:
                raise EngineUnavailableError("a ComfyUI engine is already running in this process")
            if _first_workspace is not None and _first_workspace != self.workspace:
                raise EngineUnavailableError(
                    f"ComfyUI was initialised in this process with workspace {_first_workspace}; "
                    "its settings are process-global, so another workspace needs a new process"
                )
            _active = self
            _first_workspace = self.workspace

    async def _start(self) -> None:
        try:
            compat.import_client_module()
            self.version = compat.comfy_version()
        except ImportError as exc:
            raise EngineUnavailableError(f"ComfyUI is not importable: {exc}") from exc
        if not compat.is_tested_version(self.version):
            log.warning(
                "ComfyUI %s is not a version tested with this project (tested: %s)",
                self.version,
                ", ".join(compat.TESTED_VERSIONS),
            )
        os.makedirs(self.workspace, exist_ok=True)
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.init()
        config = compat.make_configuration(self.workspace, cuda=cuda, overrides=self._overrides)
        self._client = compat.create_client(config, self._router, self._loop)
        await self._client.__aenter__()
        self._run_lock = asyncio.Lock()
        mappings = compat.load_node_mappings()
        for name, cls in {**IO_NODES, **PROJECT_NODES}.items():
            mappings[name] = cls
        for name, cls in COMFYUI_COMPATIBLE_NODES.items():
            if name not in mappings:
                mappings[name] = cls
                self.fill_ins.append(name)
        self._nodes = mappings
        log.info(
            "ComfyUI %s started in-process: workspace=%s device=%s nodes=%d fill-ins=%s",
            self.version,
            self.workspace,
            self.device,
            len(mappings),
            ",".join(self.fill_ins) or "none",
        )

    def close(self) -> None:
        """Leave the client (ComfyUI unloads its models) and stop the engine thread."""
        global _active
        if self._closed:
            return
        self._closed = True
        try:
            if self._client is not None and self._loop.is_running():
                self._call(self._client.__aexit__(None, None, None), 60.0)
        except Exception:
            log.exception("ComfyUI did not shut down cleanly")
        finally:
            self._client = None
            if self._loop.is_running():
                self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread.is_alive():
                self._thread.join(timeout=30.0)
            if not self._loop.is_running():
                self._loop.close()
            with _process_lock:
                if _active is self:
                    _active = None

    def _call(self, coro: Any, timeout: float | None) -> Any:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except FutureTimeout:
            future.cancel()
            raise InferError(f"ComfyUI did not answer within {timeout:.0f} s") from None

    # -- engine API ---------------------------------------------------------------------------

    @property
    def registry(self) -> NodeRegistry:
        return self._nodes

    def info(self) -> dict[str, Any]:
        return {
            **super().info(),
            "version": self.version,
            "tested": compat.is_tested_version(self.version),
            "workspace": self.workspace,
        }

    def _compile(self, workflow: ValidatedWorkflow) -> ComfyUIPrepared:
        prepared = ComfyUIPrepared(workflow, self)
        problems = self._call(
            compat.validate_prompt(prepared.fresh_prompt("validate"), uuid.uuid4().hex),
            self.run_timeout,
        )
        if problems:
            raise WorkflowError(
                [WorkflowProblem("comfyui_validation", f"ComfyUI: {p}") for p in problems]
            )
        return prepared

    def run(
        self,
        prepared: PreparedWorkflow,
        images: torch.Tensor,
        *,
        progress: ProgressCallback | None = None,
    ) -> RunResult:
        self._check_prepared(prepared)
        assert isinstance(prepared, ComfyUIPrepared)
        if self._closed:
            raise InferError("the ComfyUI engine is closed")
        slot = EXCHANGE.open(images, prefix="comfyui")
        try:
            prompt = prepared.fresh_prompt(slot.run_id)
            tracker = _RunProgress(prompt, prepared.workflow.order, progress)
            self._call(self._queue(prompt, tracker), self.run_timeout)
        finally:
            EXCHANGE.close(slot.run_id)
        if prepared.workflow.frame_output is not None and slot.output is None:
            node = prepared.workflow.frame_output
            raise NodeExecutionError(node, "ByocSaveFrame", "ComfyUI did not run the frame output")
        return RunResult(images=slot.output, texts=slot.texts, executed=tracker.executed)

    async def _queue(self, prompt: Prompt, tracker: _RunProgress) -> None:
        assert self._run_lock is not None
        prompt_id = uuid.uuid4().hex
        async with self._run_lock:
            self._router.open(prompt_id, tracker)
            try:
                await compat.queue_prompt(self._client, prompt, prompt_id, self._router)
            except compat.ComfyRunFailed as exc:
                node_id = exc.node_id or "?"
                class_type = exc.node_type or prompt.get(node_id, {}).get("class_type", "?")
                raise NodeExecutionError(node_id, class_type, str(exc)) from exc
            finally:
                self._router.close(prompt_id)
