"""A worker service that runs one stream object per stream id (ingest and egress use it).

``StreamStart`` starts a stream, or replaces the running one with the same id (which is also how
the parent resumes streams after the worker restarted: the rings outlive any worker).
``StreamStop`` stops it; unknown ids are ignored. A stream that ends by itself (its input or
output went away) calls ``forget`` and leaves the table.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Generic, Protocol, TypeVar

from ipc.child import WorkerContext, WorkerSpec
from ipc.messages import Message, StreamConfig, StreamStart, StreamStop, StreamUpdate

log = logging.getLogger(__name__)


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
            await self._start(message.stream_id, message.config)
        elif isinstance(message, StreamStop):
            await self._stop(message.stream_id, message.reason)
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
