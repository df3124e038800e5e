"""The per-stream service base: start, replace, stop and forget streams by id."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from ipc.child import WorkerSpec
from ipc.messages import (
    EgressConfig,
    IngestConfig,
    StreamStart,
    StreamStop,
    StreamUpdate,
)
from ipc.ring import RingSpec
from ipc.stream_service import StreamOrder, StreamService

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
