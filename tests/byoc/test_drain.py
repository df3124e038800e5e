"""Graceful drain in-process (control plane only; the real-media drain and the signals run
against the real process in ``tests/e2e/test_restart_and_drain.py``): ``POST /admin/drain``
refuses new work with 503 and ``Retry-After``, ``/health`` says ``draining``, the runner
unregisters, live streams keep running and the runner stops once they end or the drain times out."""

from __future__ import annotations

import asyncio

from byoc import capabilities as caps
from byoc.sessions import SessionState
from tests.byoc.harness import Env, running, wait_until
from tests.byoc.stream_helpers import EventReader, start_via_orch, stop_via_orch

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def state_of(env: Env, stream_id: str) -> SessionState | None:
    session = env.runner.runtime.sessions.get(stream_id)
    return session.state if session is not None else None


async def health(env: Env) -> dict[str, object]:
    async with env.http.get(f"{env.url}/health") as r:
        assert r.status == 200
        body = await r.json()
        assert isinstance(body, dict)
        return body


async def test_drain_refuses_new_work_keeps_the_stream_and_stops_when_it_ends() -> None:
    async with running(token=TOKEN, drain_timeout_s=60.0) as env:
        async with await start_via_orch(env, "d1", parameters={}) as r:
            assert r.status == 200
            events = EventReader(r.headers["X-Events-Url"])
        await wait_until(lambda: state_of(env, "d1") is SessionState.READY)
        assert env.orch is not None
        assert len(env.orch.registry.capabilities) == len(caps.IMPLEMENTED)

        async with env.http.post(f"{env.url}/admin/drain") as r:
            assert r.status == 401  # behind the token
        async with env.http.post(f"{env.url}/admin/drain", headers=AUTH) as r:
            assert r.status == 202
            assert await r.json() == {
                "status": "draining",
                "already_draining": False,
                "live_sessions": 1,
                "drain_timeout_s": 60.0,
            }
        assert (await health(env))["status"] == "draining"
        await wait_until(lambda: not env.orch.registry.capabilities, timeout=30)  # type: ignore[union-attr]

        # New work is refused, with a hint when to come back.
        for path, body in (("/stream/start", b"{}"), ("/text-reversal", b'{"text": "a"}')):
            async with env.http.post(f"{env.url}{path}", data=body, headers=AUTH) as r:
                assert r.status == 503
                assert 1 <= int(r.headers["Retry-After"]) <= 60
                assert (await r.json())["status_code"] == 503
        async with env.http.get(f"{env.url}/metrics", headers=AUTH) as r:
            assert 'byoc_admissions_refused_total{reason="draining"} 2.0' in await r.text()
        # The live stream still works: params are applied, events keep coming.
        async with env.http.post(
            f"{env.url}/stream/params",
            json={"prompt": "still here"},
            headers={**AUTH, "X-Stream-Id": "d1"},
        ) as r:
            assert r.status == 200, await r.text()
        await events.until(lambda e: e["params"].get("prompt") == "still here", timeout=30)
        assert env.served is not None and not env.served.done()

        # The gateway ends the stream: the drain is over and the runner stops by itself.
        async with await stop_via_orch(env, "d1") as r:
            assert r.status < 400
        await asyncio.wait_for(asyncio.shield(env.served), 30)
        assert state_of(env, "d1") is SessionState.STOPPED
        await events.close()


async def test_drain_timeout_stops_live_streams_cleanly() -> None:
    async with running(drain_timeout_s=1.0) as env:
        async with await start_via_orch(env, "d2", parameters={}) as r:
            assert r.status == 200
            events = EventReader(r.headers["X-Events-Url"])
        seen: list[str] = []
        collector = asyncio.create_task(_collect_states(events, seen))
        await wait_until(lambda: state_of(env, "d2") is SessionState.READY)
        async with env.http.post(f"{env.url}/admin/drain") as r:
            assert r.status == 202
        async with env.http.post(f"{env.url}/admin/drain") as r:
            assert r.status == 202 and (await r.json())["already_draining"] is True
        assert env.served is not None
        await asyncio.wait_for(asyncio.shield(env.served), 30)
        assert state_of(env, "d2") is SessionState.STOPPED
        await wait_until(lambda: seen and seen[-1] == "stopped", timeout=30)
        collector.cancel()
        await asyncio.gather(collector, return_exceptions=True)
        await events.close()


async def test_drain_without_live_sessions_stops_at_once() -> None:
    async with running() as env:
        async with env.http.post(f"{env.url}/admin/drain") as r:
            assert r.status == 202 and (await r.json())["live_sessions"] == 0
        assert env.served is not None
        await asyncio.wait_for(asyncio.shield(env.served), 30)


async def _collect_states(events: EventReader, seen: list[str]) -> None:
    while (event := await events.next(timeout=3600)) is not None:
        seen.append(event["event"]["state"])
