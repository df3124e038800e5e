"""Entry point of the egress worker process (started by the parent's supervisor with spawn).

The service runs one :class:`~egress.stream.EgressStream` per stream id (see
``ipc.stream_service``). A replaced stream (how the parent resumes streams after this worker
restarted) leaves its publish channel as it is, to be continued; a stopped one ends its open
segment, deletes the publish channel (end of stream for its readers) and finishes an MP4 with
what was written. ``StreamAudio`` goes to its stream.
"""

from __future__ import annotations

from egress.stream import EgressStream
from ipc.child import WorkerSpec, run_worker
from ipc.messages import EgressConfig, Message, StreamAudio
from ipc.stream_service import StreamService


class EgressService(StreamService[EgressStream]):
    """The egress worker's service: output rings to trickle segments and MP4 files."""

    role = "egress"
    config_type = EgressConfig

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
        await super().handle_other(message)


def main(spec: WorkerSpec) -> None:
    """Run the egress worker until the parent stops it."""
    run_worker(spec, EgressService)
