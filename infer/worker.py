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
from typing import Any

import msgspec

from ipc.child import WorkerContext, WorkerSpec, run_worker
from ipc.messages import (
    InferConfig,
    InferOptions,
    JobProgress,
    JobRequest,
    JobResult,
    Message,
    StreamReply,
    StreamStart,
    StreamStop,
    StreamUpdate,
    WorkerError,
)
from ipc.stream_service import StreamOrder

log = logging.getLogger(__name__)

IMAGE_JOB = "comfystream-image"


class InferService:
    """The infer worker's service."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.options = msgspec.convert(spec.options, InferOptions)  # a typo fails the start
        if self.options.gpu:
            # Before torch is imported (the engine loads it): this worker sees its GPU only.
            os.environ["CUDA_VISIBLE_DEVICES"] = self.options.gpu
        self._streams: dict[str, Any] = {}  # stream id -> infer.stream.InferStream
        self._frames_pool = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="infer-frames"
        )
        self._setup_pool = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="infer-setup"
        )
        self._ready = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._order = StreamOrder()
        self.engine: Any = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, ctx: WorkerContext) -> dict[str, str]:
        self.ctx = ctx
        loop = asyncio.get_running_loop()
        self.engine = await loop.run_in_executor(self._setup_pool, self._select_engine)
        self.engine.allocation_limits = self._allocation_limits()
        self._spawn(self._schedule(), "scheduler")
        self._spawn(self._report(), "stats")
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

    async def stop(self) -> None:
        for stream_id in list(self._streams):
            await self._stop_stream(stream_id)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._frames_pool.shutdown(wait=True)
        self._setup_pool.shutdown(wait=True)
        if self.engine is not None:
            self.engine.close()

    def active_streams(self) -> int:
        return len(self._streams)

    async def handle(self, message: Message) -> None:
        # Starts and updates run in the background (warm-ups take seconds); the order keeps a
        # stream's start, updates and stop in sequence, and a stop cancels a pending start.
        if isinstance(message, StreamStart) and isinstance(message.config, InferConfig):
            start = self._order.submit(
                message.stream_id, self._start_stream(message, message.config), "start"
            )
            start.add_done_callback(lambda task: self._after_start(task, message))
            self._track(start)
        elif isinstance(message, StreamUpdate):
            self._track(
                self._order.submit(message.stream_id, self._update_stream(message), "update")
            )
        elif isinstance(message, StreamStop):
            await self._order.submit(
                message.stream_id, self._stop_stream(message.stream_id), "stop"
            )
        elif isinstance(message, JobRequest):
            self._spawn(self._run_job(message), f"job-{message.job_id}")
        else:
            log.warning("infer: ignoring %s", type(message).__name__)

    # -- streams --------------------------------------------------------------------------------

    async def _start_stream(self, message: StreamStart, config: InferConfig) -> None:
        from infer.errors import WorkflowError
        from infer.stream import InferStream

        stream_id = message.stream_id
        await self._stop_stream(stream_id)  # a start for a running stream replaces it
        loop = asyncio.get_running_loop()
        stream: InferStream | None = None
        try:
            stream = InferStream(stream_id, config, self.engine)
            prepare = loop.run_in_executor(self._setup_pool, stream.prepare)
            try:
                await asyncio.shield(prepare)
            except asyncio.CancelledError:
                # Stopped while warming up: the warm-up finishes on its thread, then the
                # stream (never attached) is dropped.
                prepare.add_done_callback(lambda _: stream.close() if stream else None)
                raise
            stream.attach()
        except (WorkflowError, ValueError) as exc:
            log.warning("stream %s: rejected: %s", stream_id, exc)
            await self._reply(message, 400, str(exc))
            return
        except FileNotFoundError as exc:
            # The parent unlinks the rings of a stream it stopped: nothing left to attach to.
            log.warning("stream %s: rings gone before they were attached (%s)", stream_id, exc)
            if stream is not None:
                stream.close()
            await self._reply(message, 409, f"stream rings gone: {exc}")
            return
        except Exception as exc:
            from infer.workflow.allocation import is_out_of_memory

            if is_out_of_memory(exc):
                log.warning("stream %s: out of memory in set-up: %s", stream_id, exc)
                await self._reply(message, 503, f"not enough memory for this workflow: {exc}")
                return
            log.exception("stream %s: failed to start", stream_id)
            await self._reply(message, 500, f"inference set-up failed: {exc}")
            return
        self._streams[stream_id] = stream
        stream.waiter = asyncio.create_task(self._wait_frames(stream), name=f"wait-{stream_id}")
        log.info("stream %s: inference ready", stream_id)
        await self._reply(message, 200)

    def _after_start(self, task: asyncio.Task[None], message: StreamStart) -> None:
        if task.cancelled():  # a stop came first (or the worker is stopping)
            self._spawn(
                self._reply(message, 409, "stream stopped before it started"),
                f"reply-{message.stream_id}",
            )

    async def _update_stream(self, message: StreamUpdate) -> None:
        from infer.errors import WorkflowError

        stream = self._streams.get(message.stream_id)
        if stream is None:
            await self._reply(message, 404, "no such stream in the infer worker")
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._setup_pool, stream.update, dict(message.params))
        except (WorkflowError, ValueError, TypeError) as exc:
            await self._reply(message, 400, str(exc))
            await self.ctx.send(
                WorkerError(
                    worker="infer", message=f"update rejected: {exc}", stream_id=message.stream_id
                )
            )
            return
        await self._reply(message, 200)

    async def _stop_stream(self, stream_id: str) -> None:
        stream = self._streams.pop(stream_id, None)
        if stream is None:
            return
        # Frames of this stream may be on the inference thread: close once it is done with them.
        await asyncio.get_running_loop().run_in_executor(self._frames_pool, lambda: None)
        await self.ctx.send(stream.stats())  # the last interval's figures too
        stream.close()
        log.info("stream %s: inference stopped", stream_id)

    async def _reply(
        self, message: StreamStart | StreamUpdate, status: int, error: str = ""
    ) -> None:
        if message.request_id:
            await self.ctx.send(
                StreamReply(
                    stream_id=message.stream_id,
                    worker="infer",
                    request_id=message.request_id,
                    status=status,
                    error=error,
                )
            )

    async def _wait_frames(self, stream: Any) -> None:
        """Wake the scheduler when the stream has a frame and its previous one was handled."""
        while True:
            await stream.idle.wait()
            if await stream.reader.wait_async(timeout=1.0):
                stream.idle.clear()
                self._ready.set()

    async def _schedule(self) -> None:
        from infer.ring_io import process_ring_frames

        while True:
            await self._ready.wait()
            self._ready.clear()
            try:
                await self._run_ready_streams(process_ring_frames)
            except Exception as exc:  # keep scheduling; the failing stream reports the error
                log.exception("inference scheduling failed")
                await self.ctx.send(
                    WorkerError(worker="infer", message=f"scheduling failed: {exc}")
                )

    async def _run_ready_streams(self, process_ring_frames: Any) -> None:
        """Take the newest frame of every ready stream and run them all in one engine call."""
        items = []
        for stream in list(self._streams.values()):
            if stream.idle.is_set() or stream.reader is None:
                continue
            try:
                frame = stream.take_latest()
            except Exception as exc:
                stream.idle.set()
                await self.ctx.send(
                    WorkerError(worker="infer", message=str(exc), stream_id=stream.stream_id)
                )
                continue
            if frame is None:
                stream.idle.set()
                continue
            if stream.passthrough:
                await self._deliver(stream, frame, _forwarded(frame))
                continue
            if stream.needs_resize(frame):
                await self._resize(stream, frame)
            items.append((stream, frame))
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
            await self.ctx.send(WorkerError(worker="infer", message=f"inference failed: {exc}"))
        for (stream, frame), result in zip(items, results, strict=True):
            await self._deliver(stream, frame, result)

    async def _resize(self, stream: Any, frame: Any) -> None:
        from infer.errors import WorkflowError

        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(
                self._frames_pool, stream.runner.resize, frame.width, frame.height
            )
        except WorkflowError as exc:
            await self.ctx.send(
                WorkerError(
                    worker="infer",
                    message=f"workflow fails at the new size: {exc}",
                    stream_id=stream.stream_id,
                )
            )

    async def _deliver(self, stream: Any, frame: Any, result: Any) -> None:
        from infer.run_state import FrameResult

        if result is None:
            result = FrameResult(
                frame=frame.data, width=frame.width, height=frame.height, failed=True
            )
        try:
            if stream.stream_id in self._streams and self._streams[stream.stream_id] is stream:
                for data in stream.deliver(frame, result):
                    await self.ctx.send(data)
            else:
                frame.release()  # stopped while the frame was being processed
        except Exception as exc:
            log.exception("stream %s: could not deliver a frame", stream.stream_id)
            await self.ctx.send(
                WorkerError(worker="infer", message=str(exc), stream_id=stream.stream_id)
            )
        finally:
            stream.idle.set()

    async def _report(self) -> None:
        interval = 1.0
        while True:
            await asyncio.sleep(interval)
            for stream in list(self._streams.values()):
                interval = stream.config.stats_interval_s
                await self.ctx.send(stream.stats())

    # -- jobs -----------------------------------------------------------------------------------

    async def _run_job(self, job: JobRequest) -> None:
        from infer.image_job import ImageJobError, ImageJobLimits, run_image_job

        if job.kind != IMAGE_JOB:
            await self.ctx.send(
                JobResult(job_id=job.job_id, status=400, error=f"unknown job kind {job.kind!r}")
            )
            return
        loop = asyncio.get_running_loop()
        side = self.options.max_image_side
        limits = ImageJobLimits(max_width=side, max_height=side)

        def progress(node_id: str, class_type: str, index: int, total: int) -> None:
            update = JobProgress(
                job_id=job.job_id,
                data={"node": node_id, "class_type": class_type, "index": index, "total": total},
            )
            asyncio.run_coroutine_threadsafe(self.ctx.send(update), loop)

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
            await self.ctx.send(
                JobResult(job_id=job.job_id, status=exc.status_code, error=str(exc))
            )
            return
        except Exception as exc:
            from infer.workflow.allocation import is_out_of_memory

            if is_out_of_memory(exc):
                log.warning("job %s: out of memory: %s", job.job_id, exc)
                status, error = 503, f"not enough memory to run this workflow: {exc}"
            else:
                log.exception("job %s failed", job.job_id)
                status, error = 500, f"job failed: {exc}"
            await self.ctx.send(JobResult(job_id=job.job_id, status=status, error=error))
            return
        payload = json.dumps(result.to_json()).encode()
        await self.ctx.send(JobResult(job_id=job.job_id, status=200, payload=payload))

    # -- helpers --------------------------------------------------------------------------------

    def _spawn(self, coro: Any, name: str) -> None:
        self._track(asyncio.create_task(coro, name=name))

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)


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


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("infer task %s failed", task.get_name(), exc_info=task.exception())


def main(spec: WorkerSpec) -> None:
    """Run the infer worker until the parent stops it."""
    run_worker(spec, InferService)
