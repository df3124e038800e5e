"""Entry point and service of the infer worker: owns the engine (and the GPU when there is one).

Streams: each stream's newest input frame is taken from its input ring, the frames of all ready
streams run as one call on the single inference thread (frames that share a workflow and size are
batched), and results go to the output rings. Set-up and live updates warm up on a second thread,
so a new workflow never stalls the frames of running streams. One-shot image jobs run there too.
The event loop itself only moves messages and ring views, so heartbeats keep flowing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import time
from typing import TYPE_CHECKING, Any

import msgspec

from infer.scheduling import RoundRobin
from ipc.child import WorkerContext, WorkerSpec, run_worker
from ipc.messages import (
    InferConfig,
    InferOptions,
    JobProgress,
    JobRequest,
    JobResult,
    WorkerError,
)
from ipc.ring_format import ring_pixel_format
from ipc.stream_service import StreamRefused, StreamService

if TYPE_CHECKING:  # the stream module imports the engine (torch): loaded when a stream starts
    from infer.stream import InferStream

log = logging.getLogger(__name__)

IMAGE_JOB = "comfystream-image"


class InferService(StreamService["InferStream"]):
    """The infer worker's service: one ``InferStream`` per stream (see ``ipc.stream_service``
    for starting, replacing, updating and stopping them), a scheduler that runs their frames,
    and one-shot image jobs."""

    role = "infer"
    config_type = InferConfig
    background_setup = True  # a warm-up takes seconds: the control loop goes on meanwhile
    job_kinds = frozenset({IMAGE_JOB})

    def __init__(self, spec: WorkerSpec) -> None:
        super().__init__(spec)
        self.options = msgspec.convert(spec.options, InferOptions)  # a typo fails the start
        if self.options.gpu:
            # Before torch is imported (the engine loads it): this worker sees its GPU only.
            os.environ["CUDA_VISIBLE_DEVICES"] = self.options.gpu
        self._frames_pool = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="infer-frames"
        )
        self._setup_pool = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="infer-setup"
        )
        self._ready = asyncio.Event()
        self._round_robin = RoundRobin()
        self.engine: Any = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, ctx: WorkerContext) -> dict[str, str]:
        await super().start(ctx)
        loop = asyncio.get_running_loop()
        self.engine = await loop.run_in_executor(self._setup_pool, self._select_engine)
        self.engine.allocation_limits = self._allocation_limits()
        await loop.run_in_executor(self._setup_pool, self._warm_up_engine)
        self.spawn(self._schedule(), "scheduler")
        info = self.engine.info()
        return {
            "engine": str(info.get("name", self.engine.name)),
            "device": str(self.engine.device),
        }

    def _allocation_limits(self) -> Any:
        from infer.workflow.allocation import AllocationLimits

        return AllocationLimits(
            max_side=self.options.max_image_side,
            max_bytes=self.options.max_workflow_memory_mb * 1024**2,
        )

    def _select_engine(self) -> Any:
        from infer.engine import select_engine

        return select_engine(self.options.engine, self.options.workspace or None)

    def _warm_up_engine(self) -> None:
        from infer.stream import InferStream  # noqa: F401 -- imported now, not in a stream's set-up
        from infer.workflow_runner import warm_up_engine

        # The format the parent gives this worker's stream rings (it reads the same device).
        pixel_format = ring_pixel_format(str(self.engine.device))
        seconds = warm_up_engine(self.engine, pixel_format)
        log.info("infer: engine %s warmed up in %.0f ms", self.engine.name, seconds * 1e3)

    async def stop(self) -> None:
        await super().stop()
        self._frames_pool.shutdown(wait=True)
        self._setup_pool.shutdown(wait=True)
        if self.engine is not None:
            self.engine.close()

    # -- streams --------------------------------------------------------------------------------

    async def start_stream(self, stream_id: str, config: InferConfig) -> InferStream:
        """Validate and warm up the stream's workflow on the set-up thread, then map its rings
        and start it. Refused: 400 a bad workflow, 409 rings already gone, 503 out of memory,
        500 anything else."""
        from infer.errors import WorkflowError
        from infer.stream import InferStream

        assert self.ctx is not None
        loop = asyncio.get_running_loop()
        stream: InferStream | None = None
        try:
            stream = InferStream(
                stream_id,
                config,
                self.engine,
                self.ctx.send,
                wake=self._ready.set,
                on_done=self.forget,
                worker_index=self.ctx.index,
            )
            prepare = loop.run_in_executor(self._setup_pool, stream.prepare)
            try:
                await asyncio.shield(prepare)
            except asyncio.CancelledError:
                # Stopped while warming up: the warm-up finishes on its thread, then the
                # stream (never attached) is dropped.
                prepare.add_done_callback(lambda _: stream.release() if stream else None)
                raise
            stream.start()
        except (WorkflowError, ValueError) as exc:
            log.warning("stream %s: rejected: %s", stream_id, exc)
            raise StreamRefused(400, str(exc)) from exc
        except FileNotFoundError as exc:
            # The parent unlinks the rings of a stream it stopped: nothing left to attach to.
            log.warning("stream %s: rings gone before they were attached (%s)", stream_id, exc)
            if stream is not None:
                stream.release()
            raise StreamRefused(409, f"stream rings gone: {exc}") from exc
        except Exception as exc:
            from infer.workflow.allocation import is_out_of_memory

            if is_out_of_memory(exc):
                log.warning("stream %s: out of memory in set-up: %s", stream_id, exc)
                raise StreamRefused(503, f"not enough memory for this workflow: {exc}") from exc
            log.exception("stream %s: failed to start", stream_id)
            raise StreamRefused(500, f"inference set-up failed: {exc}") from exc
        log.info("stream %s: inference ready", stream_id)
        return stream

    async def update_stream(self, stream: InferStream, params: dict[str, Any]) -> None:
        """Warm the new parameters up on the set-up thread (400 when they are refused)."""
        from infer.errors import WorkflowError

        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._setup_pool, stream.update, params)
        except (WorkflowError, ValueError, TypeError) as exc:
            raise StreamRefused(400, str(exc)) from exc

    async def update_refused(self, stream: InferStream, refused: StreamRefused) -> None:
        await self._send(
            WorkerError(
                worker="infer", message=f"update rejected: {refused}", stream_id=stream.stream_id
            )
        )

    async def stop_stream(self, stream: InferStream, *, replacing: bool) -> None:
        stream.stopping = True
        was_running = await stream.cancel()
        # Frames of this stream may be on the inference thread: release once it is done with them.
        await asyncio.get_running_loop().run_in_executor(self._frames_pool, lambda: None)
        await stream.send_final_report(was_running)  # the last interval's figures too
        log.info("stream %s: inference stopped", stream.stream_id)

    async def _schedule(self) -> None:
        from infer.ring_io import process_ring_frames

        while True:
            await self._ready.wait()
            # One turn of the loop first: a stream whose last frame was just delivered and that
            # has the next one waiting flags itself now and joins this round, instead of every
            # stream getting a round of its own.
            await asyncio.sleep(0)
            self._ready.clear()
            try:
                await self._run_ready_streams(process_ring_frames)
            except Exception as exc:  # keep scheduling; the failing stream reports the error
                log.exception("inference scheduling failed")
                await self._send(WorkerError(worker="infer", message=f"scheduling failed: {exc}"))

    async def _run_ready_streams(self, process_ring_frames: Any) -> None:
        """Take the newest frame of every ready stream and run them, round-robin, one engine
        call per group of streams that can share one (``infer.scheduling``)."""
        from infer.batching import batch_key
        from infer.scheduling import groups_in_order

        items = []
        for stream in list(self.streams.values()):
            if stream.idle.is_set() or stream.reader is None or stream.stopping:
                continue
            try:
                frame = stream.take_latest()
            except Exception as exc:
                stream.idle.set()
                await self._send(
                    WorkerError(worker="infer", message=str(exc), stream_id=stream.stream_id)
                )
                continue
            if frame is None:
                stream.idle.set()
                continue
            if stream.passthrough:
                await self._deliver(stream, frame, _forwarded(frame))
                continue
            if stream.invert is not None and stream.inverts_on_uint8(frame):
                await self._deliver(stream, frame, stream.invert(frame))
                continue
            if stream.needs_resize(frame):
                await self._resize(stream, frame)
            items.append((stream, frame))
        if not items:
            return
        groups = groups_in_order(self._round_robin.order(items), lambda i: batch_key(i[0].runner))
        for position, group in enumerate(groups):
            if position:  # it waited for the groups before it: newer frames win
                group = [item for s, f in group if (item := await self._newest(s, f))]
            if group:
                await self._run_group(process_ring_frames, group)

    async def _newest(self, stream: InferStream, frame: Any) -> tuple[InferStream, Any] | None:
        """``(stream, its newest frame)``: ``frame`` unless a newer one arrived."""
        if not self._running(stream):
            return stream, frame  # stopped meanwhile: dropped before the engine call
        newer = stream.take_newer(frame)
        if newer is None:
            stream.idle.set()
            return None
        if newer is not frame and stream.needs_resize(newer):
            await self._resize(stream, newer)
        return stream, newer

    async def _run_group(self, process_ring_frames: Any, items: list[tuple[Any, Any]]) -> None:
        """Run frames in one engine call on the inference thread and deliver their results."""
        # No await between this check and the call: a stop that comes later waits for the call
        # on the same thread before it unmaps the stream's rings.
        for stream, frame in [(s, f) for s, f in items if not self._running(s)]:
            frame.release()
            stream.idle.set()
        items = [(s, f) for s, f in items if self._running(s)]
        if not items:
            return
        loop = asyncio.get_running_loop()
        try:
            results: list[Any] = await loop.run_in_executor(
                self._frames_pool, process_ring_frames, [(s.runner, f) for s, f in items]
            )
        except Exception as exc:  # the engine itself broke: frames pass through, counted
            log.exception("inference call failed")
            results = [None] * len(items)
            await self._send(WorkerError(worker="infer", message=f"inference failed: {exc}"))
        for (stream, frame), result in zip(items, results, strict=True):
            await self._deliver(stream, frame, result)

    def _running(self, stream: InferStream) -> bool:
        """Whether the stream is neither stopping nor replaced by a newer start."""
        return not stream.stopping and self.streams.get(stream.stream_id) is stream

    async def _resize(self, stream: InferStream, frame: Any) -> None:
        from infer.errors import WorkflowError

        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(
                self._frames_pool, stream.runner.resize, frame.width, frame.height
            )
        except WorkflowError as exc:
            await self._send(
                WorkerError(
                    worker="infer",
                    message=f"workflow fails at the new size: {exc}",
                    stream_id=stream.stream_id,
                )
            )

    async def _deliver(self, stream: InferStream, frame: Any, result: Any) -> None:
        from infer.run_state import FrameResult

        if result is None:
            result = FrameResult(
                frame=frame.data, width=frame.width, height=frame.height, failed=True
            )
        try:
            if not stream.stopping and self.streams.get(stream.stream_id) is stream:
                for data in stream.deliver(frame, result):
                    await self._send(data)
            else:
                frame.release()  # stopped while the frame was being processed
        except Exception as exc:
            log.exception("stream %s: could not deliver a frame", stream.stream_id)
            await self._send(
                WorkerError(worker="infer", message=str(exc), stream_id=stream.stream_id)
            )
        finally:
            stream.idle.set()

    # -- jobs -----------------------------------------------------------------------------------

    async def run_job(self, job: JobRequest) -> None:
        """Run a ``comfystream-image`` job on the set-up thread and send its result."""
        from infer.image_job import ImageJobError, ImageJobLimits, run_image_job

        loop = asyncio.get_running_loop()
        side = self.options.max_image_side
        limits = ImageJobLimits(max_width=side, max_height=side)

        def progress(node_id: str, class_type: str, index: int, total: int) -> None:
            update = JobProgress(
                job_id=job.job_id,
                data={"node": node_id, "class_type": class_type, "index": index, "total": total},
            )
            asyncio.run_coroutine_threadsafe(self._send(update), loop)

        def run() -> Any:
            return run_image_job(
                self.engine,
                job.payload,
                limits=limits,
                progress=progress if job.want_progress else None,
            )

        try:
            result = await loop.run_in_executor(self._setup_pool, run)
        except ImageJobError as exc:
            await self._send(JobResult(job_id=job.job_id, status=exc.status_code, error=str(exc)))
            return
        except Exception as exc:
            from infer.workflow.allocation import is_out_of_memory

            if is_out_of_memory(exc):
                log.warning("job %s: out of memory: %s", job.job_id, exc)
                status, error = 503, f"not enough memory to run this workflow: {exc}"
            else:
                log.exception("job %s failed", job.job_id)
                status, error = 500, f"job failed: {exc}"
            await self._send(JobResult(job_id=job.job_id, status=status, error=error))
            return
        payload = json.dumps(result.to_json()).encode()
        await self._send(JobResult(job_id=job.job_id, status=200, payload=payload))

    # -- helpers --------------------------------------------------------------------------------

    async def _send(self, message: Any) -> None:
        assert self.ctx is not None
        await self.ctx.send(message)


def _forwarded(frame: Any) -> Any:
    """The result of a passthrough workflow: the input frame itself, stamped."""
    from infer.run_state import FrameResult
    from ipc.frame import Stage

    now = time.monotonic_ns()
    frame.stamp(Stage.INFER_START, now)
    frame.stamp(Stage.INFER_END, now)
    return FrameResult(
        frame=frame.data,
        width=frame.width,
        height=frame.height,
        infer_start_ns=now,
        infer_end_ns=now,
    )


def main(spec: WorkerSpec) -> None:
    """Run the infer worker until the parent stops it."""
    run_worker(spec, InferService)
