"""An infer worker whose stream set-up (the workflow's warm-up) waits until a file exists: a
test holds the warm-up with it, as a slow model load would, and releases it when it chooses. The
file's path comes in the environment (``HELD_INFER_GATE``), which spawned workers inherit."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from infer.stream import InferStream
from infer.worker import InferService
from ipc.child import WorkerSpec, run_worker
from ipc.messages import InferConfig

GATE_ENV = "HELD_INFER_GATE"


class HeldInfer(InferService):
    async def start_stream(self, stream_id: str, config: InferConfig) -> InferStream:
        gate = Path(os.environ[GATE_ENV])
        while not gate.exists():  # noqa: ASYNC110 -- the test's event, across processes
            await asyncio.sleep(0.05)
        return await super().start_stream(stream_id, config)


def main(spec: WorkerSpec) -> None:
    run_worker(spec, HeldInfer)
