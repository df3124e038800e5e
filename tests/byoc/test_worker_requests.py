"""The parent's one request/reply path to its workers, with the real supervisor and the real infer
worker process: a worker killed while it holds a job and a stream start fails both at once with
the worker-restart 503, never with the reply timeout."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator

import pytest

from byoc.jobs import WorkerJobs
from byoc.media_path import MediaUnavailable, StreamSpec
from byoc.settings import Settings
from byoc.supervisor import Supervisor
from byoc.worker_media_path import WorkerMediaPath
from byoc.worker_requests import ReplyTimeout, WorkerRequests, WorkerUnavailable
from infer.worker import main as infer_main
from ipc.messages import JobResult, StreamReply
from tests.byoc.test_supervisor import eventually

# Heartbeats may stop for a long time (the worker is frozen on purpose) without a restart, and
# no reply timeout can fire before the test's own hang guard.
SETTINGS = Settings(
    heartbeat_interval_s=0.2,
    heartbeat_timeout_s=120.0,
    worker_start_timeout_s=120.0,
    restart_backoff_initial_s=0.1,
    job_timeout_s=300.0,
)
REPLY_TIMEOUT_S = 300.0
HANG_GUARD_S = 60.0
INVERT = {
    "1": {"class_type": "LoadTensor", "inputs": {}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveTensor", "inputs": {"images": ["2", 0]}},
}


@pytest.fixture
async def supervisor() -> AsyncIterator[Supervisor]:
    sup = Supervisor(
        SETTINGS, workers={"infer": infer_main}, worker_options={"infer": {"engine": "builtin"}}
    )
    await sup.start()
    assert await sup.wait_ready(120), sup.snapshot()
    yield sup
    pid = sup.workers["infer"].pid
    if pid is not None:  # never leave it frozen
        os.kill(pid, signal.SIGCONT)
    await sup.stop()


async def test_a_killed_worker_fails_its_pending_job_and_stream_start_with_a_503_at_once(
    supervisor: Supervisor,
) -> None:
    jobs = WorkerJobs(supervisor)
    media = WorkerMediaPath(
        supervisor, SETTINGS, max_width=64, max_height=64, reply_timeout_s=REPLY_TIMEOUT_S
    )
    media.connect_workers()
    pid = supervisor.workers["infer"].pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # it takes both requests in its socket, answers neither
    job = await jobs.submit("infer", "comfystream-image", b"{}")
    spec = StreamSpec(
        stream_id="lost",
        capability="comfystream-video",
        control_url="http://127.0.0.1:9/ai/trickle/x-control",
        events_url="http://127.0.0.1:9/ai/trickle/x-events",
        params={"workflow": INVERT},
    )
    start = asyncio.create_task(media.start(spec))
    await eventually(lambda: supervisor.requests.in_flight("infer") == 2, what="both pending")

    os.kill(pid, signal.SIGKILL)

    result = await asyncio.wait_for(jobs.next_event(job, REPLY_TIMEOUT_S), HANG_GUARD_S)
    assert isinstance(result, JobResult)
    assert result.status == 503 and "SIGKILL" in result.error, result
    with pytest.raises(MediaUnavailable, match="SIGKILL"):
        await asyncio.wait_for(start, HANG_GUARD_S)
    assert supervisor.requests.in_flight() == 0 and jobs.in_flight() == 0
    assert "lost" not in media.streams  # its rings were released
    assert not [n for n in os.listdir("/dev/shm") if n.startswith("cbyoc") and "lost" in n]

    # The restarted worker answers the same way again.
    await eventually(lambda: supervisor.is_ready("infer"), timeout=120, what="infer back")
    await asyncio.wait_for(media.start(spec), HANG_GUARD_S)
    await media.stop("lost", "test over")
    await media.close()


async def test_requests_not_answered_in_time_and_to_absent_workers(
    supervisor: Supervisor,
) -> None:
    requests: WorkerRequests = supervisor.requests
    with pytest.raises(WorkerUnavailable):
        await requests.send("egress", StreamReply("s", "x", "r0", 200), "r0")  # no such worker
    pid = supervisor.workers["infer"].pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(ReplyTimeout):
            await requests.ask(
                "infer", StreamReply("s", "x", "r1", 200), "r1", timeout=0.2
            )  # a message the worker would ignore anyway
        assert requests.in_flight() == 0  # a timed-out request is forgotten
        assert not requests.deliver("r1", StreamReply("s", "infer", "r1", 200), final=True)
    finally:
        os.kill(pid, signal.SIGCONT)
