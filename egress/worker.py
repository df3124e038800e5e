"""Entry point of the egress worker process (started by the parent's supervisor with spawn)."""

from __future__ import annotations

import logging

from ipc.child import WorkerContext, WorkerSpec, run_worker
from ipc.messages import Message

log = logging.getLogger(__name__)


class EgressService:
    """The egress worker's service (stream handling arrives with the streaming work)."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self._streams: set[str] = set()

    async def start(self, ctx: WorkerContext) -> dict[str, str]:
        self.ctx = ctx
        return {}

    async def handle(self, message: Message) -> None:
        log.warning("egress: ignoring unsupported message %s", type(message).__name__)

    async def stop(self) -> None:
        self._streams.clear()

    def active_streams(self) -> int:
        return len(self._streams)


def main(spec: WorkerSpec) -> None:
    """Run the egress worker until the parent stops it."""
    run_worker(spec, EgressService)
