"""Entry point of the egress worker process (started by the parent's supervisor with spawn).

The service runs one :class:`~egress.stream.EgressStream` per stream id (see
``ipc.stream_service``). A replaced stream (how the parent resumes streams after this worker
restarted) leaves its publish channel as it is, to be continued; a stopped one ends its open
segment, deletes the publish channel (end of stream for its readers) and finishes an MP4 with
what was written. ``StreamAudio`` goes to its stream.
"""

from __future__ import annotations

from byoc.livepeer.webrtc import ice
from egress.stream import EgressStream
from egress.whep.viewers import StreamViewers
from ipc.child import WorkerContext, WorkerSpec, run_worker
from ipc.messages import (
    EgressConfig,
    Message,
    PeerAnswer,
    PeerCandidates,
    PeerOffer,
    StreamAudio,
)
from ipc.stream_service import PEER_MESSAGES, PeerMessage, StreamService


class EgressService(StreamService[EgressStream]):
    """The egress worker's service: output rings to trickle segments and MP4 files."""

    role = "egress"
    config_type = EgressConfig

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
        if isinstance(message, PEER_MESSAGES):
            # Gathering candidates takes a while: other messages go on meanwhile.
            self.spawn(self._signal(message), "whep-signal")
            return
        await super().handle_other(message)

    async def _signal(self, message: PeerMessage) -> None:
        stream = self.streams.get(message.stream_id)
        viewers = stream.viewers if stream is not None else None
        await self.answer_peer(message, viewers, "no WHEP output for this stream", _whep)


async def _whep(viewers: StreamViewers, message: PeerMessage) -> PeerAnswer:
    if isinstance(message, PeerOffer):
        return await viewers.answer(message)
    if isinstance(message, PeerCandidates):
        return await viewers.add_candidates(message)
    return await viewers.close_viewer(message)


def main(spec: WorkerSpec) -> None:
    """Run the egress worker until the parent stops it."""
    run_worker(spec, EgressService)
