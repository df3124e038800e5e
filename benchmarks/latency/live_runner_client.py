"""A stream started through go-livepeer's Live Runner protocol, as a client of the official SDK
makes one: ``GET /discovery`` for a runner of the app, ``POST`` its session URL, ``POST
{app_url}/start`` through the session proxy (the runner creates the channels and answers their
URLs), and ``POST {control_url}/stop`` at the end."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from benchmarks.latency.gateway import StreamStartError, StreamUrls

APP = "comfystream"
CAPABILITY = "live-runner"


async def _session_url(http: aiohttp.ClientSession, orchestrator_url: str, wait_s: float) -> str:
    """The session URL of the first runner of ``APP`` in discovery (waits for one to appear)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        async with http.get(f"{orchestrator_url}/discovery", params={"app": APP}) as resp:
            entries = await resp.json() if resp.status == 200 else []
        for entry in entries or []:
            for runner in entry.get("runners") or []:
                if runner.get("app") == APP and str(runner.get("url", "")).endswith("/session"):
                    return str(runner["url"])
        if loop.time() > deadline:
            raise StreamStartError(404, f"no {APP} runner in discovery within {wait_s:g}s")
        await asyncio.sleep(0.2)


async def start_live_runner_stream(
    http: aiohttp.ClientSession,
    orchestrator_url: str,
    params: dict[str, Any],
    *,
    wait_s: float = 30.0,
) -> StreamUrls:
    """Reserve an app session and start its stream; the session id is the stream id."""
    session_url = await _session_url(http, orchestrator_url, wait_s)
    async with http.post(session_url, json={}) as resp:
        text = await resp.text()
        if resp.status != 200:
            raise StreamStartError(resp.status, text)
        session = await resp.json(content_type=None)
    async with http.post(f"{session['app_url']}/start", json=params) as resp:
        text = await resp.text()
        if resp.status != 200:
            raise StreamStartError(resp.status, text)
        body = await resp.json(content_type=None)
    channels = body["channels"]
    return StreamUrls(
        stream_id=session["session_id"],
        capability=CAPABILITY,
        publish_url=channels["input"],
        subscribe_url=channels["output"],
        events_url=channels["events"],
        control_url=session["control_url"],
    )


async def stop_live_runner_stream(http: aiohttp.ClientSession, urls: StreamUrls) -> None:
    """The client's stop: the orchestrator releases the session, the runner stops its stream."""
    async with http.post(f"{urls.control_url}/stop") as resp:
        await resp.read()
