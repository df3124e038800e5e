"""Entry point of the ingest worker process (started by the parent's supervisor with spawn).

The service runs one :class:`~ingest.stream.IngestStream` per stream id (see
``ipc.stream_service`` for starting, replacing and stopping). A stream whose input ended
releases its ring by itself and is forgotten.
"""

from __future__ import annotations

from byoc.livepeer.webrtc import ice
from ingest.stream import IngestStream
from ingest.webrtc.whip import WhipSource
from ipc.child import WorkerContext, WorkerSpec, run_worker
from ipc.messages import IngestConfig, Message, PeerAnswer, PeerCandidates, PeerOffer
from ipc.stream_service import PEER_MESSAGES, PeerMessage, StreamService


class IngestService(StreamService[IngestStream]):
    """The ingest worker's service: live trickle inputs, WHIP publishers and clip files into
    input rings."""

    role = "ingest"
    config_type = IngestConfig

    async def start(self, ctx: WorkerContext) -> dict[str, str]:
        ice.install(ice.IceNetwork.from_options(ctx.spec.options.get("webrtc", {})))
        return await super().start(ctx)

    def create_stream(self, stream_id: str, config: IngestConfig) -> IngestStream:
        assert self.ctx is not None
        return IngestStream(stream_id, config, self.ctx.send, on_done=self.forget)

    async def stop_stream(self, stream: IngestStream, *, replacing: bool) -> None:
        await stream.stop()

    async def handle_other(self, message: Message) -> None:
        if not isinstance(message, PEER_MESSAGES):
            await super().handle_other(message)
            return
        stream = self.streams.get(message.stream_id)
        source = stream.source if stream is not None else None
        publisher = source if isinstance(source, WhipSource) else None
        signal = self.answer_peer(message, publisher, "no WHIP input for this stream", _whip)
        if publisher is not None and isinstance(message, PeerOffer):
            # Gathering candidates (STUN, TURN) takes a while: other messages go on meanwhile.
            self.spawn(signal, "whip-answer")
        else:
            await signal


async def _whip(publisher: WhipSource, message: PeerMessage) -> PeerAnswer:
    if isinstance(message, PeerOffer):
        return await publisher.answer(message)
    if isinstance(message, PeerCandidates):
        return await publisher.add_candidates(message)
    return PeerAnswer(
        stream_id=message.stream_id,
        peer_id=message.peer_id,
        request_id=message.request_id,
        status=422,
        error="a WHIP publisher ends with its session",
    )


def main(spec: WorkerSpec) -> None:
    """Run the ingest worker until the parent stops it."""
    run_worker(spec, IngestService)
