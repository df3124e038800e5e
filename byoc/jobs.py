"""The parent side of jobs that run in a worker (``JobRequest`` out, ``JobProgress``/``JobResult`` in).

``WorkerJobs.submit`` sends the request and returns a ``PendingJob`` whose ``events`` yields the
worker's progress messages and finally its result. A worker that restarts fails every job it
held (status 503), so no caller waits for an answer that cannot come.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from byoc.supervisor import Supervisor
from ipc.channel import ChannelClosed
from ipc.messages import JobProgress, JobRequest, JobResult, Message

log = logging.getLogger(__name__)


class WorkerUnavailable(Exception):
    """The worker is not ready (starting, restarting or stopped); answered as 503."""


class JobTimeout(Exception):
    """No result within the job's time limit; answered as 504."""


LIVENESS_POLL_S = 0.5


@dataclass
class PendingJob:
    """A job sent to a worker; ``WorkerJobs.events`` yields its progress and then its result."""

    job_id: str
    worker: str
    queue: asyncio.Queue[JobProgress | JobResult] = field(default_factory=asyncio.Queue)
    done: bool = False


class WorkerJobs:
    """Routes job messages between HTTP handlers and the workers."""

    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor
        self._pending: dict[str, PendingJob] = {}
        supervisor.on_message(self._on_message)
        supervisor.on_restart(self._on_restart)

    def in_flight(self) -> int:
        return len(self._pending)

    async def submit(
        self,
        worker: str,
        kind: str,
        payload: bytes,
        *,
        want_progress: bool = False,
        job_id: str = "",
    ) -> PendingJob:
        """Send a job; raise ``WorkerUnavailable`` if the worker cannot take it now."""
        if not self._ready(worker):
            raise WorkerUnavailable(f"the {worker} worker is not ready")
        job = PendingJob(job_id or secrets.token_hex(16), worker)
        self._pending[job.job_id] = job
        try:
            await self._supervisor.send(
                worker,
                JobRequest(
                    job_id=job.job_id, kind=kind, payload=payload, want_progress=want_progress
                ),
            )
        except (ChannelClosed, OSError) as exc:
            self._pending.pop(job.job_id, None)
            raise WorkerUnavailable(f"the {worker} worker is not ready: {exc}") from exc
        log.debug("job %s (%s) sent to %s", job.job_id, kind, worker)
        return job

    async def next_event(self, job: PendingJob, timeout: float) -> JobProgress | JobResult:
        """The job's next progress message or its result.

        Raises ``JobTimeout`` after ``timeout`` seconds; a worker that stops being ready (it died
        or hung) ends the job at once with a 503 result instead of leaving it to time out.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise JobTimeout(
                    f"job {job.job_id}: no answer from the {job.worker} worker in time"
                )
            try:
                return await asyncio.wait_for(job.queue.get(), min(remaining, LIVENESS_POLL_S))
            except asyncio.TimeoutError:
                if not job.done and not self._ready(job.worker):
                    self.fail_worker(
                        job.worker, f"the {job.worker} worker stopped while running the job"
                    )

    async def events(
        self, job: PendingJob, timeout: float
    ) -> AsyncIterator[JobProgress | JobResult]:
        """Every event of ``job`` up to and including its result, all within ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = await self.next_event(job, deadline - loop.time())
            yield event
            if isinstance(event, JobResult):
                return

    def _ready(self, worker: str) -> bool:
        try:
            return self._supervisor.is_ready(worker)
        except KeyError:  # no such worker in this runner
            return False

    def forget(self, job: PendingJob) -> None:
        """Stop routing messages to ``job`` (it ended, timed out, or its client went away)."""
        self._pending.pop(job.job_id, None)

    def _on_message(self, worker: str, message: Message) -> None:
        if not isinstance(message, (JobProgress, JobResult)):
            return
        job = self._pending.get(message.job_id)
        if job is None:
            log.debug(
                "job %s: late %s from %s dropped", message.job_id, type(message).__name__, worker
            )
            return
        if isinstance(message, JobResult):
            self._pending.pop(message.job_id, None)
            job.done = True
        job.queue.put_nowait(message)

    def _on_restart(self, worker: str, restarts: int) -> None:
        self.fail_worker(worker, f"the {worker} worker restarted while running the job")

    def fail_worker(self, worker: str, reason: str) -> int:
        """End every job held by ``worker`` with a 503 result; return how many."""
        failed = [job for job in self._pending.values() if job.worker == worker]
        for job in failed:
            self._pending.pop(job.job_id, None)
            job.done = True
            job.queue.put_nowait(JobResult(job_id=job.job_id, status=503, error=reason))
        if failed:
            log.warning("%d job(s) on worker %s failed: %s", len(failed), worker, reason)
        return len(failed)
