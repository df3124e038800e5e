"""The per-stream sequence every ingest and egress stream goes through, with a stream whose work
the test controls (the real streams are covered in tests/ingest and tests/egress)."""

from __future__ import annotations

import asyncio

import pytest

from ipc.messages import Message, StreamPartState, StreamState, StreamStats
from ipc.worker_stream import WorkerStream


class Gone(Exception):
    pass


class Scripted(WorkerStream):
    role = "ingest"

    def __init__(self, outcome: StreamPartState | Exception | None) -> None:
        self.sent: list[Message] = []
        self.done: list[WorkerStream] = []
        self.something_sent = asyncio.Event()
        self.ended = asyncio.Event()

        async def send(message: Message) -> None:
            self.sent.append(message)
            self.something_sent.set()

        def on_done(stream: WorkerStream) -> None:
            self.done.append(stream)
            self.ended.set()

        super().__init__("s", send, stats_interval_s=0.05, on_done=on_done)
        self.outcome_of_work = outcome
        self.opened = self.released = 0
        self.go = asyncio.Event()

    def open(self) -> None:
        self.opened += 1

    async def work(self) -> StreamPartState:
        await self.go.wait()
        if isinstance(self.outcome_of_work, Exception):
            raise self.outcome_of_work
        assert self.outcome_of_work is not None
        return self.outcome_of_work

    def ended_by(self, exc: Exception) -> StreamPartState | None:
        return "ended" if isinstance(exc, Gone) else None

    def report(self) -> StreamStats:
        return StreamStats(stream_id="s", worker="ingest")

    def release(self) -> None:
        self.released += 1


async def finished(stream: Scripted) -> None:
    stream.go.set()
    await asyncio.wait_for(stream.ended.wait(), 30)


@pytest.mark.parametrize(
    ("outcome", "state", "error"),
    [
        ("completed", "completed", ""),
        (Gone("channel deleted"), "ended", ""),
        (RuntimeError("decoder exploded"), "failed", "ingest: decoder exploded"),
    ],
)
async def test_a_stream_ending_by_itself_reports_figures_then_its_state_and_releases(
    outcome: StreamPartState | Exception, state: str, error: str
) -> None:
    stream = Scripted(outcome)
    stream.start()
    assert stream.opened == 1 and stream.running
    await finished(stream)
    assert isinstance(stream.sent[-2], StreamStats)
    last = stream.sent[-1]
    assert isinstance(last, StreamState) and (last.state, last.error) == (state, error)
    assert stream.outcome == state and stream.released == 1 and not stream.running


async def test_a_stopped_stream_sends_its_last_figures_and_no_state() -> None:
    stream = Scripted("completed")
    stream.start()
    await asyncio.wait_for(stream.something_sent.wait(), 30)  # the reporter runs
    await stream.send_final_report(await stream.cancel())
    assert not stream.running and stream.released == 1 and not stream.done
    assert isinstance(stream.sent[-1], StreamStats)
    assert not [m for m in stream.sent if isinstance(m, StreamState)]
    await stream.send_final_report(await stream.cancel())  # stopping twice sends nothing more
    assert stream.released == 2 and sum(isinstance(m, StreamStats) for m in stream.sent) >= 2


class SwallowsOneCancel(Scripted):
    """Work that loses the first cancellation, as Python 3.11's ``asyncio.wait_for`` does when
    its inner future completes at the moment of the cancel, and then waits for an event nobody
    sets (the infer stream's "previous frame handled" flag once the stream is stopping)."""

    def __init__(self) -> None:
        super().__init__("completed")
        self.waiting = asyncio.Event()
        self.cancels_seen = 0

    async def work(self) -> StreamPartState:
        never = asyncio.Event()
        self.waiting.set()
        try:
            await never.wait()
        except asyncio.CancelledError:
            self.cancels_seen += 1  # swallowed: the loop goes on
        await never.wait()
        return "completed"


async def test_cancel_ends_work_that_swallowed_a_cancellation() -> None:
    stream = SwallowsOneCancel()
    stream.start()
    await asyncio.wait_for(stream.waiting.wait(), 30)
    cancelling = asyncio.create_task(stream.cancel())
    # Hang guard: before the fix, cancel() waited for the work forever.
    done, _ = await asyncio.wait({cancelling}, timeout=60)
    assert cancelling in done, "cancel() did not end the work"
    assert cancelling.result()  # it was running
    assert stream.cancels_seen == 1
    assert not stream.running
