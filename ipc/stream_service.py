"""A worker service that runs one stream object per stream id (ingest and egress use it).

``StreamStart`` starts a stream, or replaces the running one with the same id (which is also how
the parent resumes streams after the worker restarted: the rings outlive any worker).
``StreamStop`` stops it; unknown ids are ignored. A stream that ends by itself (its input or
output went away) calls ``forget`` and leaves the table.

``StreamOrder`` keeps the start, update and stop of one stream in the order they arrived, in
every worker (infer starts streams in the background, so without it a stop could overtake the
start it is meant to end).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, Generic, Literal, Protocol, TypeVar

from ipc.child import WorkerContext, WorkerSpec
from ipc.messages import Message, StreamConfig, StreamStart, StreamStop, StreamUpdate

log = logging.getLogger(__name__)


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


class ManagedStream(Protocol):
    """What the service needs of a stream."""

    stream_id: str

    def start(self) -> None: ...


S = TypeVar("S", bound=ManagedStream)


class StreamService(Generic[S]):
    """Base of the per-stream worker services; subclasses say how to make and stop a stream."""

    role = "worker"
    config_type: type[Any] = object

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.streams: dict[str, S] = {}
        self.ctx: WorkerContext | None = None
        self.order = StreamOrder()

    # -- what subclasses provide ------------------------------------------------------------

    def create_stream(self, stream_id: str, config: Any) -> S:
        """A new (not yet started) stream for ``config``."""
        raise NotImplementedError

    async def stop_stream(self, stream: S, *, replacing: bool) -> None:
        """Stop a stream and release what it holds (``replacing``: a new start takes over)."""
        raise NotImplementedError

    async def handle_other(self, message: Message) -> None:
        """Messages other than start/stop/update."""
        log.warning("%s: ignoring unsupported message %s", self.role, type(message).__name__)

    # -- WorkerService ----------------------------------------------------------------------

    async def start(self, ctx: WorkerContext) -> dict[str, str]:
        self.ctx = ctx
        return {}

    async def handle(self, message: Message) -> None:
        if isinstance(message, StreamStart):
            await self.order.submit(
                message.stream_id, self._start(message.stream_id, message.config), "start"
            )
        elif isinstance(message, StreamStop):
            await self.order.submit(
                message.stream_id, self._stop(message.stream_id, message.reason), "stop"
            )
        elif isinstance(message, StreamUpdate):
            log.debug("stream %s: %s has no parameters to update", message.stream_id, self.role)
        else:
            await self.handle_other(message)

    async def stop(self) -> None:
        streams = list(self.streams.values())
        self.streams.clear()
        await asyncio.gather(
            *(self.stop_stream(s, replacing=False) for s in streams), return_exceptions=True
        )

    def active_streams(self) -> int:
        return len(self.streams)

    # -- internals --------------------------------------------------------------------------

    async def _start(self, stream_id: str, config: StreamConfig) -> None:
        if not isinstance(config, self.config_type):
            raise ValueError(
                f"{self.role} expects {self.config_type.__name__}, got {type(config).__name__}"
            )
        old = self.streams.pop(stream_id, None)
        if old is not None:
            log.info("stream %s: replacing the running %s", stream_id, self.role)
            await self.stop_stream(old, replacing=True)
        stream = self.create_stream(stream_id, config)
        stream.start()
        self.streams[stream_id] = stream

    async def _stop(self, stream_id: str, reason: str) -> None:
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        log.info("stream %s: %s stopping (%s)", stream_id, self.role, reason or "no reason")
        await self.stop_stream(stream, replacing=False)  # active until its resources are free
        self.forget(stream)

    def forget(self, stream: S) -> None:
        """Drop a stream from the table (it stopped or ended by itself)."""
        if self.streams.get(stream.stream_id) is stream:
            del self.streams[stream.stream_id]
