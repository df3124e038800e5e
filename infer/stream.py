"""One stream in the infer worker: its rings, its workflow runner and its figures.

``InferStream`` is a ``WorkerStream``: ``open`` maps both rings, its ``work`` waits for input
frames and wakes the worker's scheduler (an infer stream never ends by itself: the parent stops
it), ``report`` and ``release`` are the figures and the rings. The scheduler asks each stream for
its newest unread frame (older ones are skipped: latest frame wins when inference is behind), runs
the frames of all ready streams as one call on the inference thread, and hands each result back
here to be written to the stream's output ring.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from infer.engine.base import Engine
from infer.ring_io import write_result
from infer.run_state import FrameResult
from infer.uint8_path import Uint8Inverter, invert_chain_length
from infer.workflow import PASSTHROUGH_WORKFLOW, workflow_from_params
from infer.workflow.rewrite import frame_input_ids, frame_output_ids
from infer.workflow.source import Prompt
from infer.workflow_runner import WorkflowRunner
from ipc.colour import Colour
from ipc.frame import Frame, Stage
from ipc.messages import DropReason, InferConfig, StreamData, StreamPartState, StreamStats
from ipc.ring import FrameRing, RingReader, RingWriter
from ipc.stats import StageLatencies
from ipc.untrusted_json import loads_untrusted
from ipc.worker_stream import Send, WorkerStream

log = logging.getLogger(__name__)

DEFAULT_SIZE = 512
"""Warm-up size until the first frame tells the real one."""


def is_passthrough(prompt: Prompt) -> bool:
    """Whether a workflow only hands its input frame to its output (no node in between)."""
    inputs = frame_input_ids(prompt)
    outputs = [prompt[nid] for nid in frame_output_ids(prompt)]
    return (
        len(prompt) == 2
        and len(inputs) == 1
        and len(outputs) == 1
        and all(
            value == [inputs[0], 0]
            for value in outputs[0]["inputs"].values()
            if isinstance(value, list)
        )
    )


def stream_workflow(params: dict[str, Any], width: int = 0, height: int = 0) -> Prompt:
    """The workflow of a stream's parameters (passthrough when they name none), with the input
    scaled to ``width`` x ``height`` (centre crop to keep the aspect ratio) when both are set."""
    prompt = workflow_from_params(params, default=PASSTHROUGH_WORKFLOW)
    if width and height:
        prompt = _scale_input(prompt, width, height)
    return prompt


def _scale_input(prompt: Prompt, width: int, height: int) -> Prompt:
    inputs = frame_input_ids(prompt)
    scaled: Prompt = {}
    for nid in inputs:
        scale_id = f"{nid}.fit"
        scaled[scale_id] = {
            "class_type": "ImageScale",
            "inputs": {
                "image": [nid, 0],
                "upscale_method": "bilinear",
                "width": width,
                "height": height,
                "crop": "center",
            },
        }
    for nid, node in prompt.items():
        node_inputs = {
            name: [f"{value[0]}.fit", value[1]]
            if isinstance(value, list) and len(value) == 2 and value[0] in inputs
            else value
            for name, value in node["inputs"].items()
        }
        scaled[nid] = {**node, "inputs": node_inputs}
    return scaled


class InferStream(WorkerStream):
    """The infer worker's state for one stream (see the module docstring)."""

    role = "infer"

    def __init__(
        self,
        stream_id: str,
        config: InferConfig,
        engine: Engine,
        send: Send,
        *,
        wake: Callable[[], None],
        on_done: Callable[[InferStream], None] | None = None,
        worker_index: int = 0,
    ) -> None:
        super().__init__(stream_id, send, stats_interval_s=config.stats_interval_s, on_done=on_done)
        self.config = config
        self.worker_index = worker_index
        """Which infer worker serves the stream (in its figures)."""
        self._wake = wake
        self.params: dict[str, Any] = {}
        if config.workflow:
            self.params["workflow"] = loads_untrusted(config.workflow, what="workflow")
        self.runner = WorkflowRunner(
            engine,
            stream_id,
            config.width or DEFAULT_SIZE,
            config.height or DEFAULT_SIZE,
            pixel_format=config.in_ring.pixel_format,
        )
        self.passthrough = False
        """The workflow changes nothing: frames are forwarded without the engine (bit-exact)."""
        self.invert: Uint8Inverter | None = None
        """Set when the workflow only inverts ``rgb24`` frames on the built-in engine: it runs
        on the uint8 pixels (``infer.uint8_path``), bit-exact too."""
        self.invert_size: tuple[int, int] | None = None
        """With an explicit output size, the only frame size ``invert`` may take (others go
        through the engine, which scales them); None when it takes any."""
        self.in_ring: FrameRing | None = None
        self.out_ring: FrameRing | None = None
        self.reader: RingReader | None = None
        self.writer: RingWriter | None = None
        self.idle = asyncio.Event()
        """Set while the stream's previous frame is handled and no new one was announced."""
        self.idle.set()
        self.stopping = False
        """Set when a stop began: the scheduler takes no more frames of this stream."""
        self.frames_in = 0
        self.frames_out = 0
        self.skipped = 0
        self._window_start = time.monotonic()
        self._window_in = 0
        self._window_out = 0
        self._latencies = StageLatencies()

    # -- set-up (inference-side calls are blocking: run them off the event loop) ----------------

    def prepare(self) -> None:
        """Validate and warm up the stream's workflow (raises ``WorkflowError``)."""
        prompt = stream_workflow(self.params, self.config.width, self.config.height)
        self.runner.start(prompt)
        self._choose_path(
            prompt, stream_workflow(self.params), self.config.width, self.config.height
        )

    def update(self, params: dict[str, Any]) -> None:
        """Apply new parameters: a new workflow and/or a new output size, warmed up aside."""
        merged = {**self.params, **params}
        width = int(params.get("width", self.config.width) or 0)
        height = int(params.get("height", self.config.height) or 0)
        if bool(width) != bool(height):
            raise ValueError("width and height must be given together")
        prompt = stream_workflow(merged, width, height)
        self.runner.update(prompt)
        self._choose_path(prompt, stream_workflow(merged), width, height)
        self.params = merged
        self.config = InferConfig(
            in_ring=self.config.in_ring,
            out_ring=self.config.out_ring,
            workflow=self.config.workflow,
            width=width,
            height=height,
            live=self.config.live,
            stats_interval_s=self.config.stats_interval_s,
        )

    def _choose_path(self, prompt: Prompt, unscaled: Prompt, width: int, height: int) -> None:
        """Whether frames skip the engine: a passthrough, or an inversion on uint8 pixels.

        ``unscaled`` is the workflow without the input scaling an explicit output size
        (``width`` x ``height``) adds: that scaling changes nothing on frames already of that
        size, so an inversion chain still runs on their uint8 pixels."""
        self.passthrough = is_passthrough(prompt)
        uint8 = (
            self.runner.engine.name == "builtin"
            and self.config.in_ring.pixel_format == "rgb24"
            and self.config.out_ring.pixel_format == "rgb24"
        )
        inverts = invert_chain_length(prompt) if uint8 else None
        if inverts is not None and inverts % 2 == 0:
            self.passthrough = True
        self.invert = Uint8Inverter() if inverts is not None and inverts % 2 else None
        self.invert_size = None
        if uint8 and inverts is None and width and height:
            bare = invert_chain_length(unscaled)
            if bare is not None and bare % 2:
                self.invert = Uint8Inverter()
                self.invert_size = (width, height)

    def inverts_on_uint8(self, frame: Frame) -> bool:
        """Whether ``frame`` takes the uint8 inversion rather than the engine."""
        return self.invert is not None and (
            self.invert_size is None or (frame.width, frame.height) == self.invert_size
        )

    def open(self) -> None:
        """Map the stream's rings (created by the parent) and take their reader/writer roles."""
        self.in_ring = FrameRing.attach(self.config.in_ring)
        self.out_ring = FrameRing.attach(self.config.out_ring)
        self.reader = self.in_ring.reader()
        self.writer = self.out_ring.writer()

    async def work(self) -> StreamPartState:
        """Wake the scheduler when a frame is waiting and the previous one was handled."""
        assert self.reader is not None
        while True:
            await self.idle.wait()
            if await self.reader.wait_async(timeout=1.0):
                self.idle.clear()
                self._wake()

    # -- frames -----------------------------------------------------------------------------

    def take_latest(self) -> Frame | None:
        """The newest unread input frame as a zero-copy view; older unread ones are skipped."""
        assert self.reader is not None and self.in_ring is not None
        frame = self.reader.read(copy=False, stamp=Stage.INFER_READ)
        if not self.config.live:
            if frame is not None:
                self.runner.follow_colour(Colour.from_flags(frame.flags))
            return frame  # a clip: every frame, in order
        while frame is not None and self.in_ring.stats().unread > 0:
            frame.release()  # a newer frame is waiting: latest frame wins
            self.skipped += 1
            frame = self.reader.read(copy=False, stamp=Stage.INFER_READ)
        if frame is not None:
            self.runner.follow_colour(Colour.from_flags(frame.flags))
        return frame

    def take_newer(self, frame: Frame) -> Frame | None:
        """``frame``, or the newest unread one when newer frames arrived since it was taken (a
        live stream only; ``frame`` is then released and counted as skipped; None if the newer
        frames vanished meanwhile, which a single consumer never sees)."""
        assert self.in_ring is not None
        if not self.config.live or self.in_ring.stats().unread == 0:
            return frame
        frame.release()  # one view at a time
        self.skipped += 1
        return self.take_latest()

    def needs_resize(self, frame: Frame) -> bool:
        return (frame.width, frame.height) != self.runner.size

    def deliver(self, frame: Frame, result: FrameResult) -> list[StreamData]:
        """Write the result to the output ring, release the input view, count; return text
        outputs for the data channel."""
        assert self.writer is not None
        try:
            write_result(self.writer, frame, result)
        finally:
            frame.release()
        self.frames_in += 1
        self.frames_out += 1
        self._window_in += 1
        self._window_out += 1
        stamps = frame.stamps
        self._latencies.record_between(
            "ingest_to_infer", int(stamps[Stage.INGEST_WRITTEN]), int(stamps[Stage.INFER_READ])
        )
        self._latencies.record_between("infer", result.infer_start_ns, result.infer_end_ns)
        return [
            StreamData(
                stream_id=self.stream_id,
                line=json.dumps(
                    {"type": "text", "text": text, "pts": frame.pts, "frame": frame.index}
                ),
            )
            for text in result.texts
        ]

    def frames_done(self) -> int:
        return self.frames_out

    def report(self) -> StreamStats:
        """Figures since the last call."""
        now = time.monotonic()
        elapsed = max(now - self._window_start, 1e-6)
        dropped: dict[DropReason, int] = {
            "infer_behind": self.skipped,
            "workflow_error": self.runner.stats.frames_failed,
        }
        if self.in_ring is not None and not self.in_ring.closed:
            dropped["input_ring_overwrite"] = self.in_ring.stats().dropped
        stats = StreamStats(
            stream_id=self.stream_id,
            worker="infer",
            worker_index=self.worker_index,
            fps_in=self._window_in / elapsed,
            fps_out=self._window_out / elapsed,
            frames_in=self.frames_in,
            frames_out=self.frames_out,
            dropped=dropped,
            stages=self._latencies.summary(),
        )
        self._latencies.reset()
        self._window_start, self._window_in, self._window_out = now, 0, 0
        return stats

    def release(self) -> None:
        """Detach from the rings (the parent unlinks them) and forget the workflow."""
        for ring in (self.in_ring, self.out_ring):
            if ring is not None:
                ring.close()
        self.runner.close()
