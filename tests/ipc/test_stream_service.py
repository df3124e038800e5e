"""The per-stream service base: start, replace, update, stop and forget streams by id; replies,
background set-up and one-shot jobs."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from ipc.channel import ControlChannel
from ipc.child import WorkerContext, WorkerSpec
from ipc.messages import (
    EgressConfig,
    IngestConfig,
    JobRequest,
    JobResult,
    StreamReply,
    StreamStart,
    StreamStop,
    StreamUpdate,
)
from ipc.ring import RingSpec
from ipc.stream_service import StreamOrder, StreamRefused, StreamService

RING = RingSpec(name="cbyoc-1-svc-in", slots=4, max_width=64, max_height=64, pixel_format="yuv420p")


class Recorded:
    """A stream that records what the service did to it."""

    def __init__(self, stream_id: str, config: IngestConfig) -> None:
        self.stream_id = stream_id
        self.config = config
        self.events: list[str] = []

    def start(self) -> None:
        self.events.append("start")


class Service(StreamService[Recorded]):
    role = "ingest"
    config_type = IngestConfig

    def create_stream(self, stream_id: str, config: Any) -> Recorded:
        return Recorded(stream_id, config)

    async def stop_stream(self, stream: Recorded, *, replacing: bool) -> None:
        stream.events.append("replaced" if replacing else "stopped")


@pytest.fixture
def service() -> Any:
    a, b = socket.socketpair()
    yield Service(WorkerSpec(name="ingest", control=a))
    a.close()
    b.close()


def start(stream_id: str, url: str = "http://o/ai/trickle/in") -> StreamStart:
    return StreamStart(stream_id=stream_id, config=IngestConfig(ring=RING, subscribe_url=url))


async def test_start_replace_and_stop(service: Service) -> None:
    await service.handle(start("s1"))
    first = service.streams["s1"]
    await service.handle(start("s1", "http://o/ai/trickle/other"))
    second = service.streams["s1"]
    assert first.events == ["start", "replaced"]
    assert second is not first and second.config.subscribe_url.endswith("other")
    await service.handle(StreamUpdate(stream_id="s1", params={"x": 1}))  # nothing to update
    await service.handle(StreamStop(stream_id="s1"))
    assert second.events == ["start", "stopped"]
    assert service.active_streams() == 0
    await service.handle(StreamStop(stream_id="unknown"))  # a no-op


async def test_a_config_for_another_worker_is_refused(service: Service) -> None:
    wrong = StreamStart(stream_id="s", config=EgressConfig(ring=RING, publish_url="http://o/x"))
    with pytest.raises(ValueError, match="ingest expects IngestConfig, got EgressConfig"):
        await service.handle(wrong)
    assert not service.streams


async def test_stop_stops_every_stream_and_forget_drops_one(service: Service) -> None:
    for stream_id in ("a", "b", "c"):
        await service.handle(start(stream_id))
    a = service.streams["a"]
    service.forget(a)
    assert set(service.streams) == {"b", "c"}
    others = list(service.streams.values())
    await service.stop()
    assert all(s.events == ["start", "stopped"] for s in others)
    assert a.events == ["start"]


async def test_stream_order_runs_one_streams_operations_in_sequence() -> None:

    order = StreamOrder()
    log: list[str] = []
    gate = asyncio.Event()

    async def op(name: str, wait: bool = False) -> None:
        log.append(f"{name}+")
        if wait:
            await gate.wait()
        log.append(f"{name}-")

    first = order.submit("a", op("a-update", wait=True), "update")
    second = order.submit("a", op("a-update2"), "update")
    other = order.submit("b", op("b-start"), "start")
    await other  # another stream does not wait for "a"
    assert log == ["a-update+", "b-start+", "b-start-"]
    gate.set()
    await asyncio.gather(first, second)
    assert log[3:] == ["a-update-", "a-update2+", "a-update2-"]
    assert not order.pending()


async def test_a_stop_cancels_the_pending_start_and_runs_after_it() -> None:

    order = StreamOrder()
    log: list[str] = []

    async def slow_start() -> None:
        log.append("start+")
        await asyncio.sleep(30)
        log.append("attached")  # must never happen: the stop came first

    async def stop() -> None:
        log.append("stop")

    start = order.submit("s", slow_start(), "start")
    await asyncio.sleep(0)  # the start is under way
    await order.submit("s", stop(), "stop")
    assert start.cancelled()
    assert log == ["start+", "stop"]
    # A start still queued behind another operation is discarded without running.
    gate = asyncio.Event()
    blocker = order.submit("t", gate.wait(), "update")  # type: ignore[arg-type]
    queued = order.submit("t", slow_start(), "start")
    stopping = order.submit("t", stop(), "stop")
    gate.set()
    await asyncio.gather(blocker, stopping)
    assert queued.cancelled() and log == ["start+", "stop", "stop"]


class Refusing(StreamService[Recorded]):
    """A service whose starts and updates answer with replies, set up in the background, and
    that runs one kind of job: the shape of the infer worker."""

    role = "infer"
    config_type = IngestConfig
    background_setup = True
    job_kinds = frozenset({"echo"})

    def __init__(self, spec: WorkerSpec) -> None:
        super().__init__(spec)
        self.gate = asyncio.Event()
        self.refused_updates: list[str] = []

    async def start_stream(self, stream_id: str, config: Any) -> Recorded:
        await self.gate.wait()  # a warm-up that takes a while
        if config.subscribe_url.endswith("bad"):
            raise StreamRefused(400, "bad workflow")
        stream = Recorded(stream_id, config)
        stream.start()
        return stream

    async def stop_stream(self, stream: Recorded, *, replacing: bool) -> None:
        stream.events.append("stopped")

    async def update_stream(self, stream: Recorded, params: dict[str, Any]) -> None:
        if "bad" in params:
            raise StreamRefused(400, "bad params")
        stream.events.append(f"update {sorted(params)}")

    async def update_refused(self, stream: Recorded, refused: StreamRefused) -> None:
        self.refused_updates.append(refused.error)

    async def run_job(self, job: JobRequest) -> None:
        assert self.ctx is not None
        await self.ctx.send(JobResult(job_id=job.job_id, status=200, payload=job.payload))


@pytest.fixture
async def refusing() -> Any:
    """The service with a real control channel; yields it and the parent's end."""
    a, b = socket.socketpair()
    spec = WorkerSpec(name="infer", control=a)
    service = Refusing(spec)
    parent = await ControlChannel.from_socket(b, peer="worker")
    await service.start(WorkerContext(spec, await ControlChannel.from_socket(a, peer="parent")))
    yield service, parent
    await service.stop()
    await parent.close()
    a.close()


async def _next(parent: ControlChannel) -> Any:
    async with asyncio.timeout(30):  # hang guard
        return await parent.recv()


async def test_a_start_with_a_request_id_is_answered_once_set_up(refusing: Any) -> None:
    service, parent = refusing
    start_message = StreamStart(stream_id="s", config=start("s").config, request_id="r1")
    await service.handle(start_message)  # returns at once: the set-up goes on beside
    assert not service.streams
    await service.handle(JobRequest(job_id="j", kind="echo", payload=b"hi"))
    job = await _next(parent)  # a job is not held up by a stream's set-up
    assert isinstance(job, JobResult) and (job.status, job.payload) == (200, b"hi")
    service.gate.set()
    reply = await _next(parent)
    assert isinstance(reply, StreamReply)
    assert (reply.request_id, reply.status, reply.worker) == ("r1", 200, "infer")
    assert service.streams["s"].events == ["start"]


async def test_refusals_unknown_streams_and_jobs_are_answered(refusing: Any) -> None:
    service, parent = refusing
    service.gate.set()
    bad = StreamStart(stream_id="b", config=start("b", "http://o/bad").config, request_id="r1")
    await service.handle(bad)
    reply = await _next(parent)
    assert (reply.status, reply.error) == (400, "bad workflow") and not service.streams
    await service.handle(StreamUpdate(stream_id="nope", params={"x": 1}, request_id="r2"))
    reply = await _next(parent)
    assert (reply.request_id, reply.status) == ("r2", 404)
    await service.handle(StreamStart(stream_id="s", config=start("s").config, request_id="r3"))
    assert (await _next(parent)).status == 200
    await service.handle(StreamUpdate(stream_id="s", params={"bad": 1}, request_id="r4"))
    reply = await _next(parent)
    assert (reply.request_id, reply.status, reply.error) == ("r4", 400, "bad params")
    assert service.refused_updates == ["bad params"]
    await service.handle(StreamUpdate(stream_id="s", params={"w": 1}, request_id="r5"))
    assert (await _next(parent)).status == 200
    assert service.streams["s"].events == ["start", "update ['w']"]
    await service.handle(JobRequest(job_id="j", kind="other", payload=b""))
    job = await _next(parent)
    assert isinstance(job, JobResult) and job.status == 400 and "other" in job.error


async def test_a_stop_during_set_up_answers_the_start_with_409(refusing: Any) -> None:
    service, parent = refusing
    await service.handle(StreamStart(stream_id="s", config=start("s").config, request_id="r1"))
    await service.handle(StreamStop(stream_id="s"))
    reply = await _next(parent)
    assert (reply.request_id, reply.status) == ("r1", 409)
    service.gate.set()
    await asyncio.gather(*service.order.pending())
    assert not service.streams  # the cancelled start never took the stream
