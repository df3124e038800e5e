"""What a go-livepeer gateway does to run a stream on an orchestrator (the calls themselves live
in :mod:`byoc.smoke.gateway`, shared with ``comfystream-byoc smoke``), retried while the runner
registers. Also the capability registration a runner does, for runners (the
baseline) that do not register themselves."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from byoc.smoke.gateway import (
    CHANNELS,
    START_TIMEOUT_S,
    StreamStartError,
    StreamUrls,
    start_stream,
    stop_stream,
)

__all__ = [
    "CHANNELS",
    "START_TIMEOUT_S",
    "StreamStartError",
    "StreamUrls",
    "register_capability",
    "start_stream",
    "start_stream_when_registered",
    "stop_stream",
]


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
