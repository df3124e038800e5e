"""The stand-in against Livepeer's official Python SDK (``livepeer-gateway`` 1.0.0), run in its own
environment (``.venv-gateway``, made by the Makefile) as a separate process:

- as a client: discovery, ``reserve_session``, a JSON call through the session proxy (which must
  reach the runner with the session headers), ``aclose`` (the orchestrator's stop, seen by the
  runner as ``released`` on its O2R channel);
- as a runner: ``register_runner`` (heartbeat and O2R as go-livepeer serves them); a session
  reserved and stopped by a client reaches its ``on_session_reserve``/``on_session_release``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from byoc.livepeer.standin.orchestrator import LocalOrchestrator
from tests.byoc.harness import wait_until

REPO = Path(__file__).resolve().parents[4]
SDK_PYTHON = REPO / ".venv-gateway" / "bin" / "python"
PEER = Path(__file__).with_name("gateway_sdk_peer.py")
SECRET = "orch-secret"
HANG_GUARD_S = 60

pytestmark = pytest.mark.skipif(
    not SDK_PYTHON.exists(),
    reason="the SDK environment is missing: `make .venv-gateway/.installed`",
)


class Peer:
    """The SDK script as a subprocess; its JSON lines read one by one."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, *args: str) -> Peer:
        proc = await asyncio.create_subprocess_exec(
            str(SDK_PYTHON),
            str(PEER),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=sys.stderr,
            env={"PATH": "/usr/bin:/bin"},  # nothing of this project on its path
        )
        return cls(proc)

    async def line(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), HANG_GUARD_S)
        assert raw, f"SDK peer exited with {await self.proc.wait()}"
        return dict(json.loads(raw))

    async def finish(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        return await asyncio.wait_for(self.proc.wait(), HANG_GUARD_S)

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()


@pytest.fixture
async def orch() -> AsyncIterator[LocalOrchestrator]:
    async with LocalOrchestrator(secret=SECRET, o2r_keepalive_interval_s=1.0) as orch:
        yield orch


@pytest.fixture
async def runner_app() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A runner app that echoes what reached it (URL, headers seen)."""
    seen: list[dict[str, str]] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        body = await request.json()
        return web.json_response({"echo": body, "session": request.headers["Livepeer-Session-Id"]})

    app = web.Application()
    app.router.add_post("/echo", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", seen
    finally:
        await runner.cleanup()


async def test_the_sdk_client_reserves_calls_through_the_proxy_and_stops(
    orch: LocalOrchestrator, runner_app: tuple[str, list[dict[str, str]]]
) -> None:
    runner_url, seen = runner_app
    async with aiohttp.ClientSession() as http:
        body = {"runner_url": runner_url, "app": "comfystream", "capacity": 1}
        async with http.post(
            orch.url + "/runners/heartbeat", json=body, headers={"Authorization": SECRET}
        ) as r:
            rid = (await r.json())["runner_id"]
    peer = await Peer.start(
        "client", orch.url + "/discovery", "comfystream", "echo", json.dumps({"x": 1}), "--hold"
    )
    try:
        reserved = await peer.line()
        sid = reserved["session_id"]
        assert reserved["app_url"] == f"{orch.url}/apps/{rid}/session/{sid}/app"
        answer = await peer.line()
        assert answer["answer"] == {"echo": {"x": 1}, "session": sid}
        (headers,) = seen
        assert headers["Livepeer-Session-Token"] == orch.live_runners.runners[rid].session_token(
            sid
        )
        assert orch.live_runners.runners[rid].session_ids() == [sid]
        assert await peer.finish() == 0
        assert (await peer.line())["step"] == "stopped"
        assert orch.live_runners.runners[rid].session_ids() == []
    finally:
        peer.kill()


async def test_the_sdk_runner_registers_and_sees_reservations_and_releases_on_o2r(
    orch: LocalOrchestrator, runner_app: tuple[str, list[dict[str, str]]]
) -> None:
    runner_url, _ = runner_app
    peer = await Peer.start("runner", orch.url, SECRET, runner_url, "comfystream")
    try:
        rid = (await peer.line())["runner_id"]
        assert rid in orch.live_runners.runners
        await wait_until(lambda: orch.live_runners.runners[rid].heartbeats >= 1, timeout=30)
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{orch.url}/apps/{rid}/session") as r:
                session = await r.json()
            assert await peer.line() == {"step": "reserve", "session_id": session["session_id"]}
            async with http.post(session["control_url"] + "/stop") as r:
                assert r.status == 204
            assert await peer.line() == {"step": "release", "session_id": session["session_id"]}
        assert await peer.finish() == 0
        assert (await peer.line())["step"] == "closed"
        assert rid not in orch.live_runners.runners  # the SDK unregistered on close
    finally:
        peer.kill()
