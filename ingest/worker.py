"""Entry point of the ingest worker process (started by the parent's supervisor with spawn).

The service runs one :class:`~ingest.stream.IngestStream` per stream id (see
``ipc.stream_service`` for starting, replacing and stopping). A stream whose input ended
releases its ring by itself and is forgotten.
"""

from __future__ import annotations

from ingest.stream import IngestStream
from ipc.child import WorkerSpec, run_worker
from ipc.messages import IngestConfig
from ipc.stream_service import StreamService


class IngestService(StreamService[IngestStream]):
    """The ingest worker's service: live trickle inputs and clip files into input rings."""

    role = "ingest"
    config_type = IngestConfig

    def create_stream(self, stream_id: str, config: IngestConfig) -> IngestStream:
        assert self.ctx is not None
        return IngestStream(stream_id, config, self.ctx.send, on_done=self.forget)

    async def stop_stream(self, stream: IngestStream, *, replacing: bool) -> None:
        await stream.stop()


def main(spec: WorkerSpec) -> None:
    """Run the ingest worker until the parent stops it."""
    run_worker(spec, IngestService)
