"""Helpers for Live Runner tests: the runner and the stand-in with short heartbeat timing, and
a client that reserves app sessions and calls the app API through the stand-in's proxy, shaped
as go-livepeer's reference and the ``livepeer-gateway`` SDK call it."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from tests.byoc.harness import Env, running, wait_until

ORCH_TIMING = {"heartbeat_interval_s": 0.2, "heartbeat_ttl_s": 1.5, "o2r_keepalive_interval_s": 0.3}


@contextlib.asynccontextmanager
async def live_runner_env(**changes: Any) -> AsyncIterator[Env]:
    """The runner heartbeating to the stand-in (and registered there for BYOC too)."""
    orch_options = {**ORCH_TIMING, **changes.pop("orch_options", {})}
    async with running(orch_options=orch_options, live_runner=True, **changes) as env:
        yield env


async def wait_registered(env: Env, timeout: float = 60.0) -> str:
    assert env.orch is not None
    orch = env.orch
    await wait_until(lambda: orch.live_runners.runners, timeout=timeout)
    return str(next(iter(orch.live_runners.runners)))


@dataclass
class AppSession:
    """A reserved app session, as ``POST /apps/{runner}/session`` answered it."""

    session_id: str
    app_url: str
    control_url: str


async def reserve(http: aiohttp.ClientSession, orch_url: str, runner_id: str) -> AppSession:
    async with http.post(f"{orch_url}/apps/{runner_id}/session", json={}) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
    return AppSession(body["session_id"], body["app_url"], body["control_url"])


async def reserve_status(http: aiohttp.ClientSession, orch_url: str, runner_id: str) -> int:
    async with http.post(f"{orch_url}/apps/{runner_id}/session", json={}) as resp:
        await resp.read()
        return resp.status


async def call(
    http: aiohttp.ClientSession, session: AppSession, method: str, path: str, **kwargs: Any
) -> tuple[int, Any]:
    """``method {app_url}/{path}`` through the proxy: (status, JSON body or text)."""
    async with http.request(method, f"{session.app_url}/{path}", **kwargs) as resp:
        text = await resp.text()
        try:
            return resp.status, json.loads(text)
        except ValueError:
            return resp.status, text


async def client_stop(http: aiohttp.ClientSession, session: AppSession) -> int:
    async with http.post(f"{session.control_url}/stop") as resp:
        return resp.status
