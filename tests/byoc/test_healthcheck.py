"""``comfystream-byoc health`` (the images' HEALTHCHECK) against real HTTP servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from byoc.healthcheck import check_health
from tests.byoc.harness import running
from tests.byoc.test_serve import free_port


async def test_a_running_runner_is_healthy() -> None:
    async with running(with_orchestrator=False) as env:
        ok, reason = await asyncio.to_thread(check_health, env.url)
    assert ok, reason


async def test_nothing_listening_is_unhealthy() -> None:
    ok, reason = await asyncio.to_thread(check_health, f"http://127.0.0.1:{free_port()}")
    assert not ok
    assert "no answer" in reason


@pytest.fixture
async def health_server() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """A real HTTP server whose ``/health`` answers whatever the test puts in the dict."""
    answer: dict[str, Any] = {}

    async def health(_request: web.Request) -> web.Response:
        return web.json_response(answer)

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", answer
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("status", "crash_loop", "healthy"),
    [
        ("healthy", False, True),
        ("degraded", False, True),  # a worker being restarted once in a while
        ("degraded", True, False),  # crash-looping: the operator must see it
        ("starting", False, False),
        ("draining", False, False),  # SIGTERM or /admin/drain: no new work taken
    ],
)
async def test_status_and_crash_loops_decide(
    health_server: tuple[str, dict[str, Any]], status: str, crash_loop: bool, healthy: bool
) -> None:
    url, answer = health_server
    answer.update(
        status=status,
        workers={"infer": {"state": "ready", "crash_loop": crash_loop}, "ingest": {}},
    )
    ok, reason = await asyncio.to_thread(check_health, url)
    assert ok is healthy, reason
    if crash_loop:
        assert "infer" in reason
