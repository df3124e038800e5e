"""Helpers for stream tests: start streams through the stand-in, read events, write control."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from byoc.livepeer.header import encode_header
from byoc.livepeer.trickle import TricklePublisher, TrickleSubscriber, publish_json
from tests.byoc.harness import Env

ALL_CHANNELS = {
    "enable_video_ingress": True,
    "enable_video_egress": True,
    "enable_data_output": True,
}


def stream_header(
    stream_id: str, *, parameters: dict[str, Any] | None = None, timeout: int = 10
) -> str:
    return encode_header(
        capability="comfystream-video",
        timeout_seconds=timeout,
        id=stream_id,
        request={"stream_id": stream_id},
        parameters=parameters if parameters is not None else ALL_CHANNELS,
    )


async def start_via_orch(
    env: Env, stream_id: str, body: Any = None, *, orch_url: str | None = None, **kwargs: Any
) -> aiohttp.ClientResponse:
    """``POST /ai/stream/start`` on the stand-in, as a gateway does."""
    return await env.http.post(
        f"{orch_url or env.orch_url}/ai/stream/start",
        json={"params": None} if body is None else body,
        headers={"Livepeer": stream_header(stream_id, **kwargs)},
    )


async def update_via_orch(env: Env, stream_id: str, data: bytes) -> aiohttp.ClientResponse:
    return await env.http.post(
        f"{env.orch_url}/ai/stream/update",
        data=data,
        headers={"Livepeer": stream_header(stream_id)},
    )


async def stop_via_orch(env: Env, stream_id: str, data: bytes = b"") -> aiohttp.ClientResponse:
    return await env.http.post(
        f"{env.orch_url}/ai/stream/stop",
        data=data,
        headers={"Livepeer": stream_header(stream_id)},
        skip_auto_headers=["Content-Type"],
    )


class EventReader:
    """Reads the events channel from seq 0, one JSON document per segment."""

    def __init__(self, url: str) -> None:
        self.subscriber = TrickleSubscriber(url, start_seq=0, verify_tls=False)

    async def next(self, timeout: float = 60.0) -> dict[str, Any] | None:
        segment = await asyncio.wait_for(self.subscriber.next_segment(), timeout)
        if segment is None:
            return None
        document = json.loads(await asyncio.wait_for(segment.read_all(), timeout))
        assert isinstance(document, dict)
        return document

    async def until(self, predicate: Any, timeout: float = 60.0) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = await self.next(max(0.1, deadline - loop.time()))
            assert event is not None, "events channel ended"
            if predicate(event["event"]):
                return event
            if loop.time() > deadline:
                raise AssertionError("no matching event in time")

    async def close(self) -> None:
        await self.subscriber.close()


async def publish_control(url: str, message: Any) -> None:
    """Write one message on a control channel (resuming after what is there)."""
    async with TricklePublisher(
        url, "application/json", start_seq=None, verify_tls=False, delete_on_close=False
    ) as pub:
        segment = await publish_json(pub, message)
        assert await segment.wait()
