"""What a go-livepeer gateway does to run a stream on an orchestrator: ``POST /ai/stream/start``
with a ``Livepeer`` header and ``{"params": ...}``, the channel URLs from the answer's headers,
and ``POST /ai/stream/stop``. Also the capability registration a runner does, for runners (the
baseline) that do not register themselves."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp

from byoc.livepeer.header import HEADER_NAME, encode_header

START_TIMEOUT_S = 60
CHANNELS = {"enable_video_ingress": True, "enable_video_egress": True, "enable_data_output": False}


class StreamStartError(RuntimeError):
    """The orchestrator (or the runner behind it) refused the stream."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body.strip()}")
        self.status = status
        self.body = body


@dataclass(frozen=True)
class StreamUrls:
    """The channels of a started stream, as the gateway sees them."""

    stream_id: str
    capability: str
    publish_url: str  # the gateway publishes input video here
    subscribe_url: str  # processed video appears here
    events_url: str
    control_url: str


def _header(capability: str, stream_id: str, timeout_s: int) -> str:
    return encode_header(
        capability=capability,
        timeout_seconds=timeout_s,
        id=stream_id,
        request={"stream_id": stream_id},
        parameters=CHANNELS,
    )


async def start_stream(
    http: aiohttp.ClientSession,
    orchestrator_url: str,
    capability: str,
    stream_id: str,
    params: dict[str, Any],
    *,
    timeout_s: int = START_TIMEOUT_S,
) -> StreamUrls:
    """Start a stream; raise :class:`StreamStartError` unless the orchestrator answers 200."""
    async with http.post(
        f"{orchestrator_url}/ai/stream/start",
        json={"params": params},
        headers={HEADER_NAME: _header(capability, stream_id, timeout_s)},
        timeout=aiohttp.ClientTimeout(total=timeout_s + 5),
    ) as resp:
        body = await resp.text()
        if resp.status != 200:
            raise StreamStartError(resp.status, body)
        headers = resp.headers
        return StreamUrls(
            stream_id=stream_id,
            capability=capability,
            publish_url=headers["X-Publish-Url"],
            subscribe_url=headers["X-Subscribe-Url"],
            events_url=headers["X-Events-Url"],
            control_url=headers["X-Control-Url"],
        )


async def start_stream_when_registered(
    http: aiohttp.ClientSession,
    orchestrator_url: str,
    capability: str,
    stream_id: str,
    params: dict[str, Any],
    *,
    wait_s: float = 30.0,
) -> StreamUrls:
    """``start_stream``, retried while the capability is not registered yet (400)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        try:
            return await start_stream(http, orchestrator_url, capability, stream_id, params)
        except StreamStartError as exc:
            if exc.status != 400 or "not registered" not in exc.body or loop.time() > deadline:
                raise
        await asyncio.sleep(0.2)


async def stop_stream(
    http: aiohttp.ClientSession, orchestrator_url: str, capability: str, stream_id: str
) -> int:
    """Stop a stream (the orchestrator closes its channels whatever the runner says)."""
    async with http.post(
        f"{orchestrator_url}/ai/stream/stop",
        data=b"",
        headers={HEADER_NAME: _header(capability, stream_id, 10)},
        skip_auto_headers=["Content-Type"],
        timeout=aiohttp.ClientTimeout(total=20),
    ) as resp:
        await resp.read()
        return resp.status


async def register_capability(
    http: aiohttp.ClientSession,
    orchestrator_url: str,
    *,
    name: str,
    url: str,
    secret: str,
    capacity: int = 1,
) -> None:
    """Register ``name`` at ``url`` with the orchestrator, as a runner does at start-up."""
    body = {
        "name": name,
        "url": url,
        "description": "latency benchmark baseline",
        "capacity": capacity,
        "price_per_unit": 0,
        "price_scaling": 1,
        "currency": "wei",
    }
    async with http.post(
        f"{orchestrator_url}/capability/register",
        json=body,
        headers={"Authorization": secret},
    ) as resp:
        text = await resp.text()
        if resp.status != 200:
            raise RuntimeError(f"registering {name}: HTTP {resp.status} {text.strip()}")
