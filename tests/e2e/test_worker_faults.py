"""kill -9 of each worker process mid-stream: the supervisor restarts it, processed output
resumes (built-in engine), the session survives and a status event counts the restart.

How fast the stream recovers depends on how busy the machine is (starting infer imports torch):
that figure belongs in a benchmark, not here. Waits below are hang guards only."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from tests.byoc.harness import Env, wait_until
from tests.e2e.conftest import INVERT, EventLog, LiveSource, OutputReader, start_stream


@pytest.mark.parametrize("worker", ["ingest", "infer", "egress"])
async def test_killed_worker_restarts_and_the_stream_resumes(env: Env, worker: str) -> None:
    stream_id = f"kill-{worker}"
    urls = await start_stream(env, stream_id, {"workflow": INVERT})
    assert urls is not None
    events = EventLog(urls.events)
    reader = OutputReader(urls.subscribe).start()
    source = LiveSource(urls.publish, audio=False)
    source.start()
    try:
        await reader.wait_for(lambda r: len(r.counters()) >= 15, timeout=60)
        pid = env.runner.supervisor.snapshot()[worker]["pid"]
        loop = asyncio.get_running_loop()
        supervisor = env.runner.supervisor
        os.kill(pid, signal.SIGKILL)
        killed_at = loop.time()
        killed_index = source.next_index

        def restarted() -> bool:
            return supervisor.snapshot()[worker]["pid"] != pid and supervisor.is_ready(worker)

        await wait_until(restarted, timeout=60, interval=0.01)

        def processed_after_kill(r: OutputReader) -> list[float]:
            # Frames sent after the kill and inverted: the whole path works again. (Frames in
            # between may pass through unprocessed or be dropped.)
            return [
                f.arrived - killed_at
                for f in r.frames
                if f.arrived > killed_at and f.inverted and (f.counter or 0) > killed_index
            ]

        await reader.wait_for(lambda r: len(processed_after_kill(r)) >= 10, 60)
        status = await events.until(lambda e: e["restarts"] >= 1, timeout=60)
    finally:
        await source.stop()
        await reader.close()
        await events.close()
    assert env.runner.supervisor.snapshot()[worker]["restarts"] >= 1
    assert env.runner.supervisor.snapshot()[worker]["pid"] != pid
    assert all(f.inverted for f in reader.frames[-10:])
    assert status["stream_id"] == stream_id and status["state"] in ("processing", "ready")
    session = env.runner.runtime.sessions.get(stream_id)
    assert session is not None and session.state.live
