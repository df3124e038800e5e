"""A worker for media-seam tests: it plays the part the ingest worker plays for a stream, through
the real worker runtime and supervisor, without touching media (it never attaches the ring): on
``StreamStart`` it reports ``processing`` and some ``StreamStats``; a ``StreamUpdate`` with a
``_test`` key (``end_with``, ``after``, ``error``) makes it end the stream the way a worker whose
input ended or failed would; other updates are echoed back as a ``WorkerError`` report."""

from __future__ import annotations

import asyncio

from ipc.child import WorkerContext, WorkerSpec, run_worker
from ipc.messages import (
    Message,
    StageLatency,
    StreamStart,
    StreamState,
    StreamStats,
    StreamStop,
    StreamUpdate,
    WorkerError,
)


class _FakeIngest:
    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.streams: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self, ctx: WorkerContext) -> dict[str, str]:
        self.ctx = ctx
        return {}

    async def handle(self, message: Message) -> None:
        if isinstance(message, StreamStart):
            self.streams.add(message.stream_id)
            task = asyncio.create_task(self._run(message))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        elif isinstance(message, StreamUpdate) and "_test" in message.params:
            task = asyncio.create_task(self._end(message.stream_id, message.params["_test"]))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        elif isinstance(message, StreamUpdate):
            await self.ctx.send(
                WorkerError(
                    worker="ingest",
                    message=f"saw params {sorted(message.params)}",
                    stream_id=message.stream_id,
                )
            )
        elif isinstance(message, StreamStop):
            self.streams.discard(message.stream_id)

    async def _run(self, start: StreamStart) -> None:
        sid = start.stream_id
        await self.ctx.send(StreamState(stream_id=sid, worker="ingest", state="processing"))
        await self.ctx.send(
            StreamStats(
                stream_id=sid,
                worker="ingest",
                fps_in=29.5,
                frames_in=59,
                dropped={"damaged_input": 2, "decode_error": 1},
                stages={"decode": StageLatency(p50=1.5, p95=2.0, p99=3.0, count=59)},
            )
        )
        await self.ctx.send(
            StreamStats(
                stream_id=sid,
                worker="egress",
                fps_out=29.0,
                frames_out=58,
                stages={"encode": StageLatency(p50=2.25, p95=3.0, p99=4.0, count=58)},
            )
        )

    async def _end(self, stream_id: str, how: dict[str, object]) -> None:
        await asyncio.sleep(float(str(how.get("after", 0.5))))
        await self.ctx.send(
            StreamState(
                stream_id=stream_id,
                worker="ingest",
                state=str(how["end_with"]),
                error=str(how.get("error", "")),
            )
        )

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()

    def active_streams(self) -> int:
        return len(self.streams)


def fake_ingest(spec: WorkerSpec) -> None:
    """Entry point (spawned by the supervisor)."""
    run_worker(spec, _FakeIngest)
