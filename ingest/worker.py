"""Entry point of the ingest worker process (started by the parent's supervisor with spawn).

The service runs one :class:`~ingest.stream.IngestStream` per stream id. ``StreamStart`` starts
a stream, or replaces the running one with the same id (which is also how the parent resumes
streams after this worker restarted: the rings outlived the old process). ``StreamStop`` stops
it and detaches its ring; unknown ids are ignored. A stream whose input ended releases its ring
by itself and is forgotten.
"""

from __future__ import annotations

import asyncio
import logging

from ingest.stream import IngestStream
from ipc.child import WorkerContext, WorkerSpec, run_worker
from ipc.messages import IngestConfig, Message, StreamStart, StreamStop, StreamUpdate

log = logging.getLogger(__name__)


class IngestService:
    """The ingest worker's service: live trickle inputs and clip files into input rings."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.streams: dict[str, IngestStream] = {}
        self.ctx: WorkerContext | None = None

    async def start(self, ctx: WorkerContext) -> dict[str, str]:
        self.ctx = ctx
        return {}

    async def handle(self, message: Message) -> None:
        if isinstance(message, StreamStart):
            await self._start(message)
        elif isinstance(message, StreamStop):
            await self._stop(message.stream_id, message.reason)
        elif isinstance(message, StreamUpdate):
            log.debug("stream %s: ingest has no parameters to update", message.stream_id)
        else:
            log.warning("ingest: ignoring unsupported message %s", type(message).__name__)

    async def _start(self, message: StreamStart) -> None:
        assert self.ctx is not None
        config = message.config
        if not isinstance(config, IngestConfig):
            raise ValueError(f"ingest expects an ingest config, got {type(config).__name__}")
        stream_id = message.stream_id
        old = self.streams.pop(stream_id, None)
        if old is not None:
            log.info("stream %s: replacing the running ingest", stream_id)
            await old.stop()
        stream = IngestStream(stream_id, config, self.ctx.send, on_done=self._forget)
        stream.start()
        self.streams[stream_id] = stream

    async def _stop(self, stream_id: str, reason: str) -> None:
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        log.info("stream %s: ingest stopping (%s)", stream_id, reason or "no reason")
        await stream.stop()  # counted as active until its resources are released
        self._forget(stream)

    def _forget(self, stream: IngestStream) -> None:
        if self.streams.get(stream.stream_id) is stream:
            del self.streams[stream.stream_id]

    async def stop(self) -> None:
        streams = list(self.streams.values())
        self.streams.clear()
        await asyncio.gather(*(s.stop() for s in streams), return_exceptions=True)

    def active_streams(self) -> int:
        return len(self.streams)


def main(spec: WorkerSpec) -> None:
    """Run the ingest worker until the parent stops it."""
    run_worker(spec, IngestService)
