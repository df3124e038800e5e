"""The life of one stream inside a worker, written once for ingest and egress.

``start`` maps the stream's ring (``open``) and runs two tasks: the stream's own work (``work``,
which returns how the stream ended) and a reporter sending ``StreamStats`` every
``stats_interval_s``. When the work returns or raises, the last figures and a ``StreamState`` go
to the parent, the ring is released and ``on_done`` tells the service. ``stop`` cancels both
tasks, sends the last figures and releases the ring without a state message (the parent asked).
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any

from ipc.messages import Message, StreamPartState, StreamState, StreamStats, WorkerRole

log = logging.getLogger(__name__)

CANCEL_RETRY_S = 1.0
"""How long a stop waits for a cancelled task before cancelling it again."""

Send = Callable[[Message], Awaitable[None]]


class WorkerStream(ABC):
    """Base of a worker's per-stream object; subclasses say how to open, work, report, release."""

    role: WorkerRole
    quiet_failures: tuple[type[Exception], ...] = ()
    """Exceptions from ``work`` that fail the stream with a warning rather than a traceback
    (bad input the sender must fix, not a fault of ours)."""

    def __init__(
        self,
        stream_id: str,
        send: Send,
        *,
        stats_interval_s: float,
        on_done: Callable[[Any], None] | None = None,
    ) -> None:
        self.stream_id = stream_id
        self.outcome: StreamPartState | None = None
        self._send = send
        self._on_done = on_done
        self._stats_interval_s = stats_interval_s
        self._task: asyncio.Task[None] | None = None
        self._reporter: asyncio.Task[None] | None = None

    # -- what subclasses provide ------------------------------------------------------------

    @abstractmethod
    def open(self) -> None:
        """Map the ring and take this worker's role on it (raise to refuse the stream)."""

    @abstractmethod
    async def work(self) -> StreamPartState:
        """The stream's work until it ends by itself; returns how it ended."""

    @abstractmethod
    def report(self) -> StreamStats:
        """The figures since the last report."""

    @abstractmethod
    def release(self) -> None:
        """Release the ring (idempotent)."""

    def ended_by(self, exc: Exception) -> StreamPartState | None:
        """How an exception from ``work`` ends the stream; None: it failed."""
        return None

    async def finish_outputs(self, state: StreamPartState) -> None:  # noqa: B027 - optional hook
        """Called after ``work`` ended, before the last figures go out."""

    def frames_done(self) -> int:
        """Frames handled, for the log line at the end."""
        return 0

    # -- the sequence -----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Open, then run the work and the reporter."""
        self.open()
        self._task = asyncio.create_task(self._run(), name=f"{self.role}-{self.stream_id}")
        self._reporter = asyncio.create_task(
            self._report_loop(), name=f"{self.role}-stats-{self.stream_id}"
        )

    async def cancel(self) -> bool:
        """Cancel the work and the reporter; True when the work was still running."""
        was_running = self.running
        tasks = [t for t in (self._task, self._reporter) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        while pending := [t for t in tasks if not t.done()]:
            # A task can swallow one cancellation (Python 3.11's ``asyncio.wait_for`` does when
            # its inner future completes at the same moment): cancel again until it ends.
            await asyncio.wait(pending, timeout=CANCEL_RETRY_S)
            for task in pending:
                task.cancel()
        for task in tasks:
            if not task.cancelled():
                task.exception()  # retrieved: its outcome was reported by ``_run`` already
        return was_running

    async def send_final_report(self, was_running: bool) -> None:
        """After a stop: the last figures (if it was running), then release."""
        if was_running:
            await self._send(self.report())
        self.release()

    async def _report_loop(self) -> None:
        interval = max(0.05, self._stats_interval_s)
        while True:
            await asyncio.sleep(interval)
            await self._send(self.report())

    async def _run(self) -> None:
        state: StreamPartState = "failed"
        error = ""
        try:
            state = await self.work()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            ended = self.ended_by(exc)
            if ended is None:
                if isinstance(exc, self.quiet_failures):
                    log.warning("stream %s: %s", self.stream_id, exc)
                else:
                    log.exception("stream %s: %s failed", self.stream_id, self.role)
                error = f"{self.role}: {exc}"
            else:
                state = ended
        self.outcome = state
        if self._reporter is not None:
            self._reporter.cancel()
        await self.finish_outputs(state)
        await self._send(self.report())
        await self._send(
            StreamState(stream_id=self.stream_id, worker=self.role, state=state, error=error)
        )
        log.info(
            "stream %s: %s %s after %d frames", self.stream_id, self.role, state, self.frames_done()
        )
        self.release()
        if self._on_done is not None:
            self._on_done(self)
