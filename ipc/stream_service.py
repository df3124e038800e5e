"""A worker service that runs one stream object per stream id (all three workers use it).

``StreamStart`` starts a stream, or replaces the running one with the same id (which is also how
the parent resumes streams after the worker restarted: the rings outlive any worker).
``StreamStop`` stops it; unknown ids are ignored. ``StreamUpdate`` applies new parameters to a
running stream. A stream that ends by itself (its input or output went away) calls ``forget``
and leaves the table.

A start or update that carries a ``request_id`` is answered with a ``StreamReply``: 200 when it
took effect, the status of a ``StreamRefused`` the service raised, 404 for an update of an
unknown stream, 409 for a start that a stop cancelled. A service whose set-up takes seconds (infer
warms up workflows) sets ``background_setup``: its starts and updates then run beside the control
loop instead of holding it. ``JobRequest`` runs one-shot jobs of the kinds in ``job_kinds`` beside
the streams.

``StreamOrder`` keeps the start, update and stop of one stream in the order they arrived, in
every worker (with background set-up, a stop could otherwise overtake the start it is meant to
end).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar

from ipc.child import WorkerContext, WorkerSpec
from ipc.messages import (
    JobRequest,
    JobResult,
    Message,
    PeerAnswer,
    PeerCandidates,
    PeerClose,
    PeerOffer,
    StreamReply,
    StreamStart,
    StreamStop,
    StreamUpdate,
    WorkerRole,
)

log = logging.getLogger(__name__)

PeerMessage = PeerOffer | PeerCandidates | PeerClose
"""WebRTC signalling the parent forwards to the worker that holds the peer."""
PEER_MESSAGES = (PeerOffer, PeerCandidates, PeerClose)
P = TypeVar("P")


class StreamOrder:
    """Runs the operations of each stream one at a time, in the order they were submitted.

    A ``stop`` cancels a ``start`` of the same stream that has not finished: the parent unlinks
    a stopped stream's rings, so attaching them after the stop could only fail (or, if it won
    the race, keep a stream the parent has forgotten). Streams do not wait for each other.
    """

    def __init__(self) -> None:
        self._tails: dict[str, asyncio.Task[None]] = {}
        self._starts: dict[str, asyncio.Task[None]] = {}

    def submit(
        self,
        stream_id: str,
        operation: Coroutine[Any, Any, None],
        kind: Literal["start", "update", "stop"],
    ) -> asyncio.Task[None]:
        """Queue ``operation`` behind the stream's earlier ones; returns its task."""
        if kind == "stop":
            pending = self._starts.get(stream_id)
            if pending is not None and not pending.done():
                log.info("stream %s: stopped while starting; the start is cancelled", stream_id)
                pending.cancel()
        previous = self._tails.get(stream_id)
        task = asyncio.create_task(self._after(previous, operation), name=f"{kind}-{stream_id}")
        self._tails[stream_id] = task
        if kind == "start":
            self._starts[stream_id] = task
        task.add_done_callback(lambda done: self._done(stream_id, done, operation))
        return task

    def pending(self) -> list[asyncio.Task[None]]:
        """The operations not finished yet."""
        return [t for t in {*self._tails.values(), *self._starts.values()} if not t.done()]

    @staticmethod
    async def _after(
        previous: asyncio.Task[None] | None, operation: Coroutine[Any, Any, None]
    ) -> None:
        if previous is not None:
            await asyncio.wait([previous])  # its outcome is its own; only the order matters
        await operation

    def _done(
        self, stream_id: str, task: asyncio.Task[None], operation: Coroutine[Any, Any, None]
    ) -> None:
        operation.close()  # a no-op once it ran; a cancelled one that never began is discarded
        if self._tails.get(stream_id) is task:
            del self._tails[stream_id]
        if self._starts.get(stream_id) is task:
            del self._starts[stream_id]


class StreamRefused(Exception):
    """A start or update the service refuses; the reply carries ``status`` and the message."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


class ManagedStream(Protocol):
    """What the service needs of a stream."""

    stream_id: str

    def start(self) -> None: ...


S = TypeVar("S", bound=ManagedStream)


class StreamService(Generic[S]):
    """Base of the per-stream worker services; subclasses say how to make and stop a stream."""

    role: ClassVar[WorkerRole]
    config_type: type[Any] = object
    background_setup = False
    """Run starts and updates beside the control loop (their set-up takes seconds)."""
    job_kinds: ClassVar[frozenset[str]] = frozenset()
    """The ``JobRequest`` kinds this worker runs (none: job requests are ignored)."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.streams: dict[str, S] = {}
        self.ctx: WorkerContext | None = None
        self.order = StreamOrder()
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- what subclasses provide ------------------------------------------------------------

    def create_stream(self, stream_id: str, config: Any) -> S:
        """A new (not yet started) stream for ``config``."""
        raise NotImplementedError

    async def start_stream(self, stream_id: str, config: Any) -> S:
        """A started stream for ``config`` (raise ``StreamRefused`` to refuse it)."""
        stream = self.create_stream(stream_id, config)
        stream.start()
        return stream

    async def stop_stream(self, stream: S, *, replacing: bool) -> None:
        """Stop a stream and release what it holds (``replacing``: a new start takes over)."""
        raise NotImplementedError

    async def update_stream(self, stream: S, params: dict[str, Any]) -> None:
        """Apply new parameters to a running stream (raise ``StreamRefused`` to refuse them)."""
        log.debug("stream %s: %s has no parameters to update", stream.stream_id, self.role)

    async def update_refused(self, stream: S, refused: StreamRefused) -> None:
        """Called after a refused update was answered (optional hook)."""

    async def run_job(self, job: JobRequest) -> None:
        """Run one job of a kind in ``job_kinds`` and send its ``JobResult``."""
        raise NotImplementedError

    async def handle_other(self, message: Message) -> None:
        """Messages other than start/stop/update and jobs."""
        log.warning("%s: ignoring unsupported message %s", self.role, type(message).__name__)

    # -- WorkerService ----------------------------------------------------------------------

    async def start(self, ctx: WorkerContext) -> dict[str, str]:
        self.ctx = ctx
        return {}

    async def handle(self, message: Message) -> None:
        if isinstance(message, StreamStart):
            start = self.order.submit(message.stream_id, self._start(message), "start")
            if message.request_id:
                start.add_done_callback(lambda task: self._after_start(task, message))
            await self._settle(start)
        elif isinstance(message, StreamUpdate):
            await self._settle(
                self.order.submit(message.stream_id, self._update(message), "update")
            )
        elif isinstance(message, StreamStop):
            await self.order.submit(
                message.stream_id, self._stop(message.stream_id, message.reason), "stop"
            )
        elif isinstance(message, JobRequest) and self.job_kinds:
            self.spawn(self._job(message), f"job-{message.job_id}")
        else:
            await self.handle_other(message)

    async def stop(self) -> None:
        streams = list(self.streams.values())
        self.streams.clear()
        await asyncio.gather(
            *(self.stop_stream(s, replacing=False) for s in streams), return_exceptions=True
        )
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def active_streams(self) -> int:
        return len(self.streams)

    # -- helpers for subclasses -------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run ``coro`` beside the control loop; cancelled when the service stops."""
        task = asyncio.create_task(coro, name=name)
        self._track(task)
        return task

    def forget(self, stream: S) -> None:
        """Drop a stream from the table (it stopped or ended by itself)."""
        if self.streams.get(stream.stream_id) is stream:
            del self.streams[stream.stream_id]

    async def reply(
        self, message: StreamStart | StreamUpdate, status: int, error: str = ""
    ) -> None:
        """Answer a start or update that asked for a reply (one without ``request_id`` did not)."""
        if message.request_id:
            assert self.ctx is not None
            await self.ctx.send(
                StreamReply(
                    stream_id=message.stream_id,
                    worker=self.role,
                    request_id=message.request_id,
                    status=status,
                    error=error,
                )
            )

    async def answer_peer(
        self,
        message: PeerMessage,
        endpoint: P | None,
        missing: str,
        route: Callable[[P, PeerMessage], Awaitable[PeerAnswer]],
    ) -> None:
        """Send the answer ``route`` gives for a signalling message to the stream's WebRTC
        ``endpoint``; 404 with ``missing`` when the stream has none."""
        assert self.ctx is not None
        if endpoint is None:
            reply = PeerAnswer(
                stream_id=message.stream_id,
                peer_id=message.peer_id,
                request_id=message.request_id,
                status=404,
                error=missing,
            )
        else:
            reply = await route(endpoint, message)
        await self.ctx.send(reply)

    # -- internals --------------------------------------------------------------------------

    async def _settle(self, task: asyncio.Task[None]) -> None:
        if self.background_setup:
            self._track(task)
        else:
            await task

    async def _start(self, message: StreamStart) -> None:
        stream_id, config = message.stream_id, message.config
        if not isinstance(config, self.config_type):
            raise ValueError(
                f"{self.role} expects {self.config_type.__name__}, got {type(config).__name__}"
            )
        old = self.streams.pop(stream_id, None)
        if old is not None:
            log.info("stream %s: replacing the running %s", stream_id, self.role)
            await self.stop_stream(old, replacing=True)
        try:
            stream = await self.start_stream(stream_id, config)
        except StreamRefused as refused:
            await self.reply(message, refused.status, refused.error)
            return
        self.streams[stream_id] = stream
        await self.reply(message, 200)

    def _after_start(self, task: asyncio.Task[None], message: StreamStart) -> None:
        if task.cancelled():  # a stop came first (or the worker is stopping)
            self.spawn(
                self.reply(message, 409, "stream stopped before it started"),
                f"reply-{message.stream_id}",
            )

    async def _update(self, message: StreamUpdate) -> None:
        stream = self.streams.get(message.stream_id)
        if stream is None:
            await self.reply(message, 404, f"no such stream in the {self.role} worker")
            return
        try:
            await self.update_stream(stream, dict(message.params))
        except StreamRefused as refused:
            await self.reply(message, refused.status, refused.error)
            await self.update_refused(stream, refused)
            return
        await self.reply(message, 200)

    async def _stop(self, stream_id: str, reason: str) -> None:
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        log.info("stream %s: %s stopping (%s)", stream_id, self.role, reason or "no reason")
        await self.stop_stream(stream, replacing=False)  # active until its resources are free
        self.forget(stream)

    async def _job(self, job: JobRequest) -> None:
        if job.kind not in self.job_kinds:
            assert self.ctx is not None
            await self.ctx.send(
                JobResult(job_id=job.job_id, status=400, error=f"unknown job kind {job.kind!r}")
            )
            return
        await self.run_job(job)

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("task %s failed", task.get_name(), exc_info=task.exception())
