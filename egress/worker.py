"""Entry point of the egress worker process (started by the parent's supervisor with spawn).

The service runs one :class:`~egress.stream.EgressStream` per stream id. ``StreamStart`` starts
a stream, or replaces the running one with the same id (how the parent resumes streams after
this worker restarted: the rings outlived the old process; the publish channel is continued,
not deleted). ``StreamStop`` stops it: the open segment is ended, the publish channel deleted
(end of stream for its readers), an MP4 finished with what was written, the ring detached.
Unknown ids are ignored. ``StreamAudio`` goes to its stream.
"""

from __future__ import annotations

import asyncio
import logging

from egress.stream import EgressStream
from ipc.child import WorkerContext, WorkerSpec, run_worker
from ipc.messages import EgressConfig, Message, StreamAudio, StreamStart, StreamStop, StreamUpdate

log = logging.getLogger(__name__)


class EgressService:
    """The egress worker's service: output rings to trickle segments and MP4 files."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.streams: dict[str, EgressStream] = {}
        self.ctx: WorkerContext | None = None

    async def start(self, ctx: WorkerContext) -> dict[str, str]:
        self.ctx = ctx
        return {}

    async def handle(self, message: Message) -> None:
        if isinstance(message, StreamAudio):
            stream = self.streams.get(message.stream_id)
            if stream is not None:
                stream.on_audio(message)
        elif isinstance(message, StreamStart):
            await self._start(message)
        elif isinstance(message, StreamStop):
            await self._stop(message.stream_id, message.reason)
        elif isinstance(message, StreamUpdate):
            log.debug("stream %s: egress has no parameters to update", message.stream_id)
        else:
            log.warning("egress: ignoring unsupported message %s", type(message).__name__)

    async def _start(self, message: StreamStart) -> None:
        assert self.ctx is not None
        config = message.config
        if not isinstance(config, EgressConfig):
            raise ValueError(f"egress expects an egress config, got {type(config).__name__}")
        stream_id = message.stream_id
        old = self.streams.pop(stream_id, None)
        if old is not None:
            log.info("stream %s: replacing the running egress", stream_id)
            await old.stop(finish=False)
        stream = EgressStream(stream_id, config, self.ctx.send, on_done=self._forget)
        stream.start()
        self.streams[stream_id] = stream

    async def _stop(self, stream_id: str, reason: str) -> None:
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        log.info("stream %s: egress stopping (%s)", stream_id, reason or "no reason")
        await stream.stop(finish=True)  # counted as active until its resources are released
        self._forget(stream)

    def _forget(self, stream: EgressStream) -> None:
        if self.streams.get(stream.stream_id) is stream:
            del self.streams[stream.stream_id]

    async def stop(self) -> None:
        streams = list(self.streams.values())
        self.streams.clear()
        await asyncio.gather(*(s.stop(finish=True) for s in streams), return_exceptions=True)

    def active_streams(self) -> int:
        return len(self.streams)


def main(spec: WorkerSpec) -> None:
    """Run the egress worker until the parent stops it."""
    run_worker(spec, EgressService)
