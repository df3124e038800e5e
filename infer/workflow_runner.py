"""One stream's inference state: its workflow, its frame converter, warm-up, live updates.

``WorkflowRunner.start`` validates the workflow and warms it up on dummy frames of the stream's
size, so the first real frame is not slow. ``update`` does the same aside and swaps the new
workflow in between two frames; when it fails, the old workflow keeps running and the error is
raised to the caller. A frame the workflow fails on passes through unchanged and is counted.
Frames of several streams that share a workflow and a size run as one batch (``infer.batching``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from infer.batching import process_frames
from infer.engine.base import Engine, PreparedWorkflow
from infer.errors import WorkflowError, WorkflowProblem
from infer.run_state import ActiveWorkflow, FrameResult
from infer.tensors import PixelConverter, Pixels
from ipc import pixfmt
from ipc.colour import Colour

log = logging.getLogger(__name__)


@dataclass
class RunnerStats:
    """Counters of one stream's pipeline."""

    frames_in: int = 0
    frames_out: int = 0
    frames_failed: int = 0
    updates_applied: int = 0
    updates_rejected: int = 0
    warmups: int = 0
    last_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class WorkflowRunner:
    """The inference side of one stream. ``process``/``update``/``resize`` are blocking and may
    be called from different threads; run them off the event loop."""

    def __init__(
        self,
        engine: Engine,
        stream_id: str,
        width: int,
        height: int,
        pixel_format: str = "rgb24",
        *,
        warmup_frames: int | None = None,
        colour: Colour | None = None,
    ) -> None:
        self.engine = engine
        self.stream_id = stream_id
        self.pixel_format = pixel_format
        self.colour = colour or Colour()
        """The input's colour description (unspecified until a frame tells)."""
        self.warmup_frames = max(
            1, engine.warmup_frames if warmup_frames is None else warmup_frames
        )
        """Dummy frames per warm-up (the engine's number unless given)."""
        self.stats = RunnerStats()
        self._size = (width, height)
        self._active: ActiveWorkflow | None = None
        self._update_lock = threading.Lock()  # one update/resize at a time
        self._stats_lock = threading.Lock()
        self._logged_errors: set[str] = set()
        self._closed = False
        pixfmt.parse_pixel_format(pixel_format)  # rejects unknown formats early

    # -- state ----------------------------------------------------------------------------------

    @property
    def active(self) -> ActiveWorkflow:
        """The workflow in use (raises before ``start``)."""
        active = self._active
        if active is None:
            raise RuntimeError(f"stream {self.stream_id}: pipeline not started")
        return active

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the input frames."""
        return self._size

    @property
    def output_size(self) -> tuple[int, int]:
        """(width, height) of the output frames (differs from ``size`` when the workflow scales)."""
        return self.active.output_size

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, workflow: Any) -> None:
        """Prepare ``workflow`` (dict, JSON string, one-element list or ``PreparedWorkflow``) and
        warm it up. Raises ``WorkflowError`` when it is invalid or fails on dummy frames."""
        with self._update_lock:
            self._active = self._build(workflow, *self._size)
        log.info(
            "stream %s: workflow %s ready on %s (%dx%d %s -> %dx%d)",
            self.stream_id,
            self.active.prepared.key,
            self.engine.name,
            *self._size,
            self.pixel_format,
            *self.active.output_size,
        )

    def update(self, workflow: Any) -> None:
        """Validate and warm up ``workflow`` aside, then swap it in between two frames.

        On failure the running workflow is kept, the failure is counted and re-raised as a
        ``WorkflowError`` for the caller to report (400 / stream error event).
        """
        with self._update_lock:
            try:
                new = self._build(workflow, *self._size)
            except WorkflowError as exc:
                with self._stats_lock:
                    self.stats.updates_rejected += 1
                    self.stats.last_error = str(exc)
                log.warning(
                    "stream %s: update rejected, keeping the old workflow: %s", self.stream_id, exc
                )
                raise
            self._active = new
            with self._stats_lock:
                self.stats.updates_applied += 1
        log.info("stream %s: workflow updated to %s", self.stream_id, new.prepared.key)

    def resize(self, width: int, height: int) -> None:
        """The input size changed: re-create the converter and re-warm the current workflow.

        If the workflow fails at the new size, frames of that size still flow (they pass through,
        counted) and the ``WorkflowError`` is raised for the caller to report.
        """
        with self._update_lock:
            if (width, height) == self._size:
                return
            prepared = self.active.prepared
            self._size = (width, height)
            try:
                self._active = self._build(prepared, width, height)
            except WorkflowError:
                converter = self._converter(width, height)
                self._active = ActiveWorkflow(prepared, converter, (width, height))
                raise
        log.info("stream %s: resized to %dx%d", self.stream_id, width, height)

    def close(self) -> None:
        """Forget the workflow (the engine is shared and stays up)."""
        self._closed = True
        self._active = None

    # -- frames ---------------------------------------------------------------------------------

    def process(
        self, frames: Sequence[Pixels], out: Sequence[np.ndarray] | None = None
    ) -> list[FrameResult]:
        """Run the workflow on a batch of this stream's frames (in order); one result each.

        ``out`` optionally gives destination arrays (e.g. output ring slots), one per frame.
        """
        return process_frames([(self, f) for f in frames], out)

    def record(self, result: FrameResult) -> None:
        """Count a frame's outcome (called by the batcher)."""
        with self._stats_lock:
            self.stats.frames_in += 1
            self.stats.frames_out += 1
            if result.failed:
                self.stats.frames_failed += 1
                self.stats.last_error = result.error
        if (
            result.failed
            and result.error not in self._logged_errors
            and len(self._logged_errors) < 32
        ):
            self._logged_errors.add(result.error or "")
            log.warning(
                "stream %s: frame passed through unchanged: %s", self.stream_id, result.error
            )

    # -- internals ------------------------------------------------------------------------------

    def follow_colour(self, colour: Colour) -> None:
        """Frames now carry ``colour``: convert them (and the results) with it from the next
        call on. Cheap when nothing changed; never blocks on an update in progress (one that
        lands later builds its converter from ``self.colour`` too)."""
        if colour == self.colour:
            return
        self.colour = colour
        active = self._active
        if active is not None:
            converter = self._converter(active.converter.width, active.converter.height)
            self._active = dataclasses.replace(active, converter=converter)
        log.info("stream %s: input colour %s", self.stream_id, colour)

    def _converter(self, width: int, height: int) -> PixelConverter:
        return PixelConverter(
            width, height, self.pixel_format, self.engine.device, colour=self.colour
        )

    def _build(self, workflow: Any, width: int, height: int) -> ActiveWorkflow:
        if self._closed:
            raise RuntimeError(f"stream {self.stream_id}: pipeline closed")
        prepared = (
            workflow if isinstance(workflow, PreparedWorkflow) else self.engine.prepare(workflow)
        )
        if prepared.engine is not self.engine:
            raise ValueError("the workflow was prepared by another engine")
        converter = self._converter(width, height)
        output_size = self._warm_up(prepared, converter)
        with self._stats_lock:
            self.stats.warmups += 1
        return ActiveWorkflow(prepared, converter, output_size)

    def _warm_up(self, prepared: PreparedWorkflow, converter: PixelConverter) -> tuple[int, int]:
        """Run dummy frames of the stream's size; return the output (width, height)."""
        rng = np.random.default_rng(0)
        size = (converter.width, converter.height)
        started = time.perf_counter()
        for _ in range(self.warmup_frames):
            dummy = rng.integers(0, 256, converter.nbytes, dtype=np.uint8)
            try:
                result = self.engine.run(prepared, converter.to_images([dummy]))
                if result.images is not None:
                    converter.to_frames(result.images[:1])
                    size = (int(result.images.shape[2]), int(result.images.shape[1]))
            except Exception as exc:
                raise WorkflowError(
                    WorkflowProblem(
                        "warmup_failed",
                        f"the workflow failed on a {converter.width}x{converter.height} "
                        f"{converter.pixel_format} frame: {exc}",
                    )
                ) from exc
        if self.engine.device.type == "cuda":
            torch.cuda.synchronize(self.engine.device)
        log.debug(
            "stream %s: warm-up of %s: %d frames in %.1f ms",
            self.stream_id,
            prepared.key,
            self.warmup_frames,
            (time.perf_counter() - started) * 1e3,
        )
        return size


ENGINE_WARMUP_SIZE = 256
"""Side of the frame that ``warm_up_engine`` runs: large enough that torch's parallel kernels
start their thread pool."""
ENGINE_WARMUP_WORKFLOW = {
    "1": {"class_type": "LoadTensor", "inputs": {}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveTensor", "inputs": {"images": ["2", 0]}},
}


def warm_up_engine(engine: Engine, pixel_format: str) -> float:
    """Run a small invert workflow once on ``engine`` so that the process's one-time costs
    (torch's first kernels and thread pool, lazy imports) are paid when the worker starts, not
    in the first stream's warm-up (which delays its first output frame). Returns the seconds it
    took; a failure is logged and ignored (every stream still warms its own workflow up)."""
    started = time.perf_counter()
    try:
        size = ENGINE_WARMUP_SIZE
        runner = WorkflowRunner(engine, "engine-warm-up", size, size, pixel_format)
        runner.start(ENGINE_WARMUP_WORKFLOW)
        blank = np.zeros(runner.active.converter.nbytes, dtype=np.uint8)
        runner.process([blank])
        runner.close()
    except Exception as exc:
        log.warning("engine %s: warm-up at start failed (ignored): %s", engine.name, exc)
    return time.perf_counter() - started
