"""An infer-worker stand-in for the parent's job tests: it answers ``JobRequest`` for
``comfystream-image`` through the real worker runtime, control channel and supervisor, until the
infer worker's own handler is used instead. It inverts the input PNG (Pillow) and reports one
progress event per fake node. Test knobs ride in the request body under ``"test"``:
``delay`` (seconds before answering), ``progress`` (number of progress events), ``status`` and
``error`` (a failure result), ``progress_delay`` (seconds between progress events).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from typing import Any

from PIL import Image, ImageOps

from ipc.child import WorkerContext, WorkerSpec, run_worker
from ipc.messages import JobProgress, JobRequest, JobResult, Message


class _ImageJobs:
    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self, ctx: WorkerContext) -> dict[str, str]:
        self.ctx = ctx
        return {"engine": "test"}

    async def handle(self, message: Message) -> None:
        if isinstance(message, JobRequest):
            task = asyncio.create_task(self._run(message))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _run(self, job: JobRequest) -> None:
        try:
            await self._answer(job)
        except Exception as exc:  # a bad request must still get an answer
            await self.ctx.send(JobResult(job.job_id, 400, error=f"bad request: {exc!r}"))

    async def _answer(self, job: JobRequest) -> None:
        started = time.monotonic()
        body: dict[str, Any] = json.loads(job.payload)
        knobs = body.get("test", {})
        if job.want_progress:
            for node in range(int(knobs.get("progress", 2))):
                await self.ctx.send(
                    JobProgress(job.job_id, {"node": str(node), "class_type": "ImageInvert"})
                )
                await asyncio.sleep(float(knobs.get("progress_delay", 0)))
        await asyncio.sleep(float(knobs.get("delay", 0)))
        if "status" in knobs:
            await self.ctx.send(
                JobResult(job.job_id, int(knobs["status"]), error=str(knobs.get("error", "")))
            )
            return
        try:
            image = Image.open(io.BytesIO(base64.b64decode(body["image"]))).convert("RGB")
        except Exception as exc:
            await self.ctx.send(JobResult(job.job_id, 400, error=f"bad image: {exc}"))
            return
        out = io.BytesIO()
        ImageOps.invert(image).save(out, format="PNG")
        result = {
            "image": base64.b64encode(out.getvalue()).decode(),
            "width": image.width,
            "height": image.height,
            "elapsed_ms": round((time.monotonic() - started) * 1000, 3),
        }
        await self.ctx.send(JobResult(job.job_id, 200, payload=json.dumps(result).encode()))

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()

    def active_streams(self) -> int:
        return 0


def image_worker(spec: WorkerSpec) -> None:
    """Entry point (spawned by the supervisor)."""
    run_worker(spec, _ImageJobs)
