"""The stand-in's stream relay against a scripted worker (byoc-protocol.md sections 3.2-3.3)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from byoc.livepeer.header import encode_header
from byoc.livepeer.standin.orchestrator import LocalOrchestrator
from byoc.livepeer.standin.orchestrator.registry import ExternalCapability
from byoc.livepeer.trickle import TrickleSubscriber
from tests.byoc.livepeer.standin.orchestrator.capture import CaptureWorker, fixed

ALL = {"enable_video_ingress": True, "enable_video_egress": True, "enable_data_output": True}
SUFFIXES = ("", "-out", "-control", "-events", "-data")


@pytest.fixture
async def setup() -> AsyncIterator[tuple[LocalOrchestrator, CaptureWorker, aiohttp.ClientSession]]:
    worker = CaptureWorker()
    await worker.start()
    orch = LocalOrchestrator(keepalive_interval_s=0.1)
    await orch.start()
    orch.registry.capabilities["vid"] = ExternalCapability(
        name="vid", url=worker.url, capacity=2, token="t"
    )
    http = aiohttp.ClientSession()
    try:
        yield orch, worker, http
    finally:
        await http.close()
        await orch.close()
        await worker.close()


def hdr(stream_id: str, parameters: object = ALL, capability: str = "vid") -> dict[str, str]:
    return {
        "Livepeer": encode_header(
            capability=capability,
            timeout_seconds=5,
            id=stream_id,
            request={"stream_id": stream_id},
            parameters=parameters,  # type: ignore[arg-type]
        )
    }


async def test_start_creates_five_channels_and_merges_the_body(setup) -> None:  # type: ignore[no-untyped-def]
    orch, worker, http = setup
    body = {"params": {"a": 1}, "control_url": "overridden", "extra": True}
    async with http.post(f"{orch.url}/ai/stream/start", json=body, headers=hdr("s1")) as r:
        assert r.status == 200 and await r.read() == b""
        assert r.headers["X-Publish-Url"] == f"{orch.trickle_base}s1"
        assert r.headers["X-Subscribe-Url"] == f"{orch.trickle_base}s1-out"
    assert sorted(orch.trickle.channel_names()) == sorted("s1" + s for s in SUFFIXES)
    seen = worker.seen[-1]
    assert seen.path == "/stream/start"
    assert seen.headers["X-Stream-Id"] == "s1" and seen.headers["Authorization"] == "Bearer t"
    assert seen.headers["Content-Type"] == "application/json"
    sent = json.loads(seen.body)
    base = orch.trickle_base
    assert sent == {
        "gateway_request_id": "s1",
        "control_url": "overridden",  # the caller's keys win
        "events_url": base + "s1-events",
        "subscribe_url": base + "s1",
        "publish_url": base + "s1-out",
        "data_url": base + "s1-data",
        "params": {"a": 1},
        "extra": True,
    }
    assert orch.registry.capabilities["vid"].load == 1


async def test_keepalives_arrive_on_the_control_channel(setup) -> None:  # type: ignore[no-untyped-def]
    orch, _, http = setup
    async with http.post(
        f"{orch.url}/ai/stream/start", json={"params": None}, headers=hdr("k", {})
    ) as r:
        assert r.status == 200
        assert "X-Publish-Url" not in r.headers and "X-Data-Url" not in r.headers
        control_url = r.headers["X-Control-Url"]
    async with TrickleSubscriber(control_url, start_seq=0) as sub:
        for _ in range(2):
            segment = await asyncio.wait_for(sub.next_segment(), 60)
            assert segment is not None
            assert json.loads(await segment.read_all()) == {"keep": "alive"}


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"[1]", None, 400),
        (b"nope", None, 400),
        (b"{}", {"Livepeer": encode_header(capability="nope", timeout_seconds=5)}, 400),
        (
            b"{}",
            {"Livepeer": encode_header(capability="vid", timeout_seconds=5, parameters="{bad")},
            400,
        ),
        (b"{}", {}, 400),
    ],
)
async def test_bad_starts(setup, body: bytes, headers: dict[str, str] | None, status: int) -> None:  # type: ignore[no-untyped-def]
    orch, worker, http = setup
    async with http.post(
        f"{orch.url}/ai/stream/start", data=body, headers=hdr("b") if headers is None else headers
    ) as r:
        assert r.status == status
    assert worker.seen == [] and orch.trickle.channel_names() == []


async def test_worker_refusal_closes_the_channels_and_is_relayed(setup) -> None:  # type: ignore[no-untyped-def]
    orch, worker, http = setup
    worker.replies["/stream/start"] = fixed(503, b'{"error":"full"}', "application/json")
    async with http.post(f"{orch.url}/ai/stream/start", json={}, headers=hdr("full")) as r:
        assert r.status == 503 and b"full" in await r.read()
    assert orch.trickle.channel_names() == [] and orch.registry.capabilities["vid"].load == 0


async def test_worker_401_on_start_drops_the_capability(setup) -> None:  # type: ignore[no-untyped-def]
    orch, worker, http = setup
    worker.replies["/stream/start"] = fixed(401)
    async with http.post(f"{orch.url}/ai/stream/start", json={}, headers=hdr("x")) as r:
        assert r.status == 500
    assert "vid" not in orch.registry.capabilities


async def test_unreachable_worker_on_start_is_500_and_channels_closed(setup) -> None:  # type: ignore[no-untyped-def]
    orch, _, http = setup
    orch.registry.capabilities["vid"].url = "http://127.0.0.1:9"
    async with http.post(f"{orch.url}/ai/stream/start", json={}, headers=hdr("x")) as r:
        assert r.status == 500
    assert orch.trickle.channel_names() == []


async def test_duplicate_stream_id_is_500_after_the_worker_started(setup) -> None:  # type: ignore[no-untyped-def]
    orch, worker, http = setup
    async with http.post(f"{orch.url}/ai/stream/start", json={}, headers=hdr("d")) as r:
        assert r.status == 200
    async with http.post(f"{orch.url}/ai/stream/start", json={}, headers=hdr("d")) as r:
        assert r.status == 500
    assert len([s for s in worker.seen if s.path == "/stream/start"]) == 2
    assert orch.trickle.channel_names() == []  # go-livepeer closes them, even the first's


async def test_update_forwards_the_raw_body_and_relays_the_answer(setup) -> None:  # type: ignore[no-untyped-def]
    orch, worker, http = setup
    worker.replies["/stream/params"] = fixed(400, b'{"error":"no"}', "application/json")
    async with http.post(
        f"{orch.url}/ai/stream/update",
        data=b'{"w": 1}',
        headers={**hdr("u"), "Content-Type": "text/plain"},
    ) as r:
        assert r.status == 400 and await r.read() == b'{"error":"no"}\n'
    seen = worker.seen[-1]
    assert seen.path == "/stream/params" and seen.body == b'{"w": 1}'
    assert seen.headers["Content-Type"] == "application/json" and seen.headers["X-Stream-Id"] == "u"


async def test_stop_sends_no_content_type_and_closes_everything(setup) -> None:  # type: ignore[no-untyped-def]
    orch, worker, http = setup
    async with http.post(f"{orch.url}/ai/stream/start", json={}, headers=hdr("z")) as r:
        assert r.status == 200
    worker.replies["/stream/stop"] = fixed(500, b"boom")
    async with http.post(
        f"{orch.url}/ai/stream/stop",
        data=b"stream ended",
        headers=hdr("z"),
        skip_auto_headers=["Content-Type"],
    ) as r:
        assert r.status == 500  # the worker's answer is relayed...
    seen = worker.seen[-1]
    assert seen.path == "/stream/stop" and seen.body == b"stream ended"
    assert "Content-Type" not in seen.headers
    assert (
        orch.trickle.channel_names() == [] and "z" not in orch.streams.streams
    )  # ...but it is gone
    assert orch.registry.capabilities["vid"].load == 0


async def test_stop_with_an_unreachable_worker_is_still_200(setup) -> None:  # type: ignore[no-untyped-def]
    orch, _, http = setup
    async with http.post(f"{orch.url}/ai/stream/start", json={}, headers=hdr("y")) as r:
        assert r.status == 200
    orch.registry.capabilities["vid"].url = "http://127.0.0.1:9"
    orch.streams.streams["y"].capability.url = "http://127.0.0.1:9"
    async with http.post(f"{orch.url}/ai/stream/stop", data=b"", headers=hdr("y")) as r:
        assert r.status == 200
    assert orch.trickle.channel_names() == []
