"""The parent side of jobs that run in a worker (``JobRequest`` out, ``JobProgress``/``JobResult`` in).

``WorkerJobs.submit`` sends the request through the supervisor's ``WorkerRequests`` and returns a
``PendingJob``; ``next_event``/``events`` yield the worker's progress messages and finally its
result. A worker whose process ends while it holds the job ends it at once with a 503 result, so
no caller waits for an answer that cannot come.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

from byoc.supervisor import Supervisor
from byoc.worker_requests import PendingRequest, ReplyTimeout, WorkerLost, WorkerUnavailable
from ipc.messages import JobProgress, JobRequest, JobResult

__all__ = ["JobTimeout", "PendingJob", "WorkerJobs", "WorkerUnavailable"]


class JobTimeout(Exception):
    """No result within the job's time limit; answered as 504."""


@dataclass
class PendingJob:
    """A job sent to a worker."""

    job_id: str
    worker: str
    request: PendingRequest
    done: bool = False


class WorkerJobs:
    """Jobs of HTTP handlers, run by the workers."""

    def __init__(self, supervisor: Supervisor) -> None:
        self._requests = supervisor.requests
        self._jobs: dict[str, PendingJob] = {}

    def in_flight(self) -> int:
        """Jobs sent and not yet answered, timed out or forgotten."""
        return sum(1 for job in self._jobs.values() if not job.done)

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
        job_id = job_id or secrets.token_hex(16)
        message = JobRequest(job_id=job_id, kind=kind, payload=payload, want_progress=want_progress)
        request = await self._requests.send(worker, message, job_id)
        job = PendingJob(job_id, worker, request)
        self._jobs[job_id] = job
        return job

    async def next_event(self, job: PendingJob, timeout: float) -> JobProgress | JobResult:
        """The job's next progress message or its result (a 503 result when the worker died).

        Raises ``JobTimeout`` after ``timeout`` seconds.
        """
        try:
            event = await self._requests.next_reply(job.request, timeout)
        except ReplyTimeout:
            raise JobTimeout(
                f"job {job.job_id}: no answer from the {job.worker} worker in time"
            ) from None
        except WorkerLost as exc:
            event = JobResult(job_id=job.job_id, status=503, error=str(exc))
        if not isinstance(event, (JobProgress, JobResult)):
            raise TypeError(f"job {job.job_id}: unexpected reply {type(event).__name__}")
        if isinstance(event, JobResult):
            job.done = True
            self._jobs.pop(job.job_id, None)
        return event

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

    def forget(self, job: PendingJob) -> None:
        """Stop routing messages to ``job`` (it ended, timed out, or its client went away)."""
        self._jobs.pop(job.job_id, None)
        self._requests.forget(job.request)
