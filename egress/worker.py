"""Entry point of the egress worker process (started by the parent's supervisor with spawn).

The service runs one :class:`~egress.stream.EgressStream` per stream id (see
``ipc.stream_service``). A replaced stream (how the parent resumes streams after this worker
restarted) leaves its publish channel as it is, to be continued; a stopped one ends its open
segment, deletes the publish channel (end of stream for its readers) and finishes an MP4 with
what was written. ``StreamAudio`` goes to its stream.
"""

from __future__ import annotations

import asyncio

from byoc.livepeer.webrtc import ice
from egress.stream import EgressStream
from ipc.child import WorkerContext, WorkerSpec, run_worker
from ipc.messages import (
    EgressConfig,
    Message,
    PeerAnswer,
    PeerCandidates,
    PeerClose,
    PeerOffer,
    StreamAudio,
)
from ipc.stream_service import StreamService


class EgressService(StreamService[EgressStream]):
    """The egress worker's service: output rings to trickle segments and MP4 files."""

    role = "egress"
    config_type = EgressConfig

    def __init__(self, spec: WorkerSpec) -> None:
        super().__init__(spec)
        self._signalling: set[asyncio.Task[None]] = set()

    async def start(self, ctx: WorkerContext) -> dict[str, str]:
        ice.install(ice.IceNetwork.from_options(ctx.spec.options.get("webrtc", {})))
        return await super().start(ctx)

    def create_stream(self, stream_id: str, config: EgressConfig) -> EgressStream:
        assert self.ctx is not None
        return EgressStream(stream_id, config, self.ctx.send, on_done=self.forget)

    async def stop_stream(self, stream: EgressStream, *, replacing: bool) -> None:
        await stream.stop(finish=not replacing)

    async def handle_other(self, message: Message) -> None:
        if isinstance(message, StreamAudio):
            stream = self.streams.get(message.stream_id)
            if stream is not None:
                stream.on_audio(message)
            return
        if isinstance(message, (PeerOffer, PeerCandidates, PeerClose)):
            # Gathering candidates takes a while: other messages go on meanwhile.
            task = asyncio.create_task(self._signal(message), name="whep-signal")
            self._signalling.add(task)
            task.add_done_callback(self._signalling.discard)
            return
        await super().handle_other(message)

    async def _signal(self, message: PeerOffer | PeerCandidates | PeerClose) -> None:
        assert self.ctx is not None
        stream = self.streams.get(message.stream_id)
        viewers = stream.viewers if stream is not None else None
        if viewers is None:
            reply = PeerAnswer(
                stream_id=message.stream_id,
                peer_id=message.peer_id,
                request_id=message.request_id,
                status=404,
                error="no WHEP output for this stream",
            )
        elif isinstance(message, PeerOffer):
            reply = await viewers.answer(message)
        elif isinstance(message, PeerCandidates):
            reply = await viewers.add_candidates(message)
        else:
            reply = await viewers.close_viewer(message)
        await self.ctx.send(reply)


def main(spec: WorkerSpec) -> None:
    """Run the egress worker until the parent stops it."""
    run_worker(spec, EgressService)
