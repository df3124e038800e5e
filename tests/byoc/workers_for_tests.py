"""Worker entry points that misbehave on purpose, for supervisor tests.

They run through the real runtime (``ipc.child.run_worker``) in real spawned processes; only
their service logic is made to fail.
"""

from __future__ import annotations

import os

from ipc.child import WorkerContext, WorkerSpec, run_worker
from ipc.messages import Message


def exits_at_once(spec: WorkerSpec) -> None:
    """A worker whose process dies right after it starts (a crash loop)."""
    spec.control.close()
    os._exit(3)


class _FailingStart:
    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec

    async def start(self, ctx: WorkerContext) -> dict[str, str]:
        raise RuntimeError("model file missing")

    async def handle(self, message: Message) -> None:  # pragma: no cover - never started
        pass

    async def stop(self) -> None:
        pass

    def active_streams(self) -> int:
        return 0


def fails_to_start(spec: WorkerSpec) -> None:
    """A worker whose service raises during start."""
    run_worker(spec, _FailingStart)
