"""The stand-in's Live Runner client endpoints and session-control callbacks, against a small
aiohttp app playing the runner over a real socket: reserve, proxy (any method, headers, query,
streamed bodies, SSE), the token-checked callbacks, channel creation on the trickle server,
capacity, stop and single-shot."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from byoc.livepeer.standin.orchestrator import LocalOrchestrator
from byoc.livepeer.trickle.publisher import TricklePublisher
from byoc.livepeer.trickle.subscriber import TrickleSubscriber

SECRET = "orch-secret"


@dataclass
class FakeRunner:
    """Records what reached the runner; answers echo, SSE and slow-body routes."""

    url: str = ""
    seen: list[dict[str, Any]] = field(default_factory=list)
    sse_gate: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/base/events", self.events)
        app.router.add_get("/base/ws", self.websocket)
        app.router.add_route("*", "/base/{tail:.*}", self.echo)
        app.router.add_route("*", "/base", self.echo)
        return app

    async def echo(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append(
            {
                "method": request.method,
                "path": request.path,
                "query": request.query_string,
                "headers": dict(request.headers),
                "body": body,
            }
        )
        return web.json_response({"len": len(body)}, status=201, headers={"X-From": "runner"})

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=("chat",))
        await ws.prepare(request)
        await ws.send_str(request.headers["Livepeer-Session-Id"])
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str("echo " + message.data)
            elif message.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(message.data[::-1])
        return ws

    async def events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: first\n\n")
        await self.sse_gate.wait()  # the client must see the first event before this opens
        await response.write(b"data: second\n\n")
        await response.write_eof()
        return response


@pytest.fixture
async def runner() -> AsyncIterator[FakeRunner]:
    fake = FakeRunner()
    app_runner = web.AppRunner(fake.app())
    await app_runner.setup()
    site = web.TCPSite(app_runner, "127.0.0.1", 0)
    await site.start()
    fake.url = f"http://127.0.0.1:{app_runner.addresses[0][1]}/base"
    try:
        yield fake
    finally:
        fake.sse_gate.set()  # an SSE handler still waiting would hold cleanup for a minute
        await app_runner.cleanup()


@pytest.fixture
async def orch() -> AsyncIterator[LocalOrchestrator]:
    async with LocalOrchestrator(secret=SECRET) as orch:
        yield orch


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def registered(
    http: aiohttp.ClientSession, orch: LocalOrchestrator, runner: FakeRunner, **extra: Any
) -> str:
    body = {"runner_url": runner.url, "app": "comfystream", "capacity": 2, **extra}
    headers = {"Authorization": SECRET}
    async with http.post(orch.url + "/runners/heartbeat", json=body, headers=headers) as r:
        assert r.status == 200
        return str((await r.json())["runner_id"])


async def reserve(http: aiohttp.ClientSession, orch: LocalOrchestrator, rid: str) -> Any:
    async with http.post(f"{orch.url}/apps/{rid}/session") as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def test_discovery_lists_the_runner_by_orchestrator_url_only(
    http: aiohttp.ClientSession, orch: LocalOrchestrator, runner: FakeRunner
) -> None:
    rid = await registered(
        http, orch, runner, gpu={"name": "H100", "vram_mb": 81559}, metadata="comfy", version="1"
    )
    async with http.get(orch.url + "/discovery") as r:
        (entry,) = await r.json()
    assert entry["address"] == orch.url
    (listed,) = entry["runners"]
    assert listed == {
        "url": f"{orch.url}/apps/{rid}/session",
        "gpu": {"name": "H100", "vram_mb": 81559},
        "app": "comfystream",
        "version": "1",
        "metadata": "comfy",
        "mode": "persistent",
        "capacity": 2,
        "capacity_used": 0,
        "capacity_available": 2,
    }
    assert runner.url not in json.dumps(entry)


async def test_reserve_answers_urls_and_the_proxy_adds_the_session_headers(
    http: aiohttp.ClientSession, orch: LocalOrchestrator, runner: FakeRunner
) -> None:
    rid = await registered(http, orch, runner)
    session = await reserve(http, orch, rid)
    sid = session["session_id"]
    control = f"{orch.url}/apps/{rid}/session/{sid}"
    assert session == {"session_id": sid, "app_url": control + "/app", "control_url": control}
    spoofed = {
        "Livepeer-Session-Id": "session_other",
        "Livepeer-Session-Token": "forged",
        "X-Forwarded-For": "10.0.0.1",
        "X-Client": "kept",
    }
    url = session["app_url"] + "/live/video-to-video/start?x=1&y=2"
    async with http.put(url, data=b"hello", headers=spoofed) as r:
        assert r.status == 201
        assert r.headers["X-From"] == "runner"
        assert await r.json() == {"len": 5}
    (seen,) = runner.seen
    assert seen["method"] == "PUT"
    assert seen["path"] == "/base/live/video-to-video/start"
    assert seen["query"] == "x=1&y=2"
    headers = seen["headers"]
    assert headers["Livepeer-Runner-Route"] == rid
    assert headers["Livepeer-Session-Id"] == sid
    assert headers["Livepeer-Session-Token"] == orch.live_runners.runners[rid].session_token(sid)
    assert headers["Livepeer-Session-Control"] == f"{orch.url}/runner/{rid}/session/{sid}"
    assert headers["X-Client"] == "kept"
    assert "X-Forwarded-For" not in headers
    assert headers["Host"] == runner.url.split("/")[2]


async def test_a_large_body_is_streamed_through(
    http: aiohttp.ClientSession, orch: LocalOrchestrator, runner: FakeRunner
) -> None:
    rid = await registered(http, orch, runner)
    session = await reserve(http, orch, rid)
    payload = bytes(range(256)) * 40_000  # 10 MB

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(payload), 1 << 20):
            yield payload[i : i + (1 << 20)]

    async with http.post(session["app_url"] + "/upload", data=chunks()) as r:
        assert r.status == 201 and await r.json() == {"len": len(payload)}
    assert runner.seen[-1]["body"] == payload


async def test_sse_events_reach_the_client_one_by_one(
    http: aiohttp.ClientSession, orch: LocalOrchestrator, runner: FakeRunner
) -> None:
    rid = await registered(http, orch, runner)
    session = await reserve(http, orch, rid)
    async with http.get(session["app_url"] + "/events") as r:
        assert r.headers["Content-Type"] == "text/event-stream"
        first = await asyncio.wait_for(r.content.readuntil(b"\n\n"), 30)
        assert first == b"data: first\n\n"  # while the runner still holds the second back
        runner.sse_gate.set()
        assert await asyncio.wait_for(r.content.read(), 30) == b"data: second\n\n"


async def test_unknown_sessions_and_runners_are_404_and_a_dead_runner_is_502(
    http: aiohttp.ClientSession, orch: LocalOrchestrator, runner: FakeRunner
) -> None:
    rid = await registered(http, orch, runner)
    async with http.get(f"{orch.url}/apps/{rid}/session/session_nope/app/x") as r:
        assert (r.status, await r.text()) == (404, "runner session not found\n")
    async with http.get(f"{orch.url}/apps/runner_nope/session/s/app/x") as r:
        assert (r.status, await r.text()) == (404, "runner not found\n")
    dead_rid = await registered(http, orch, FakeRunner(url="http://127.0.0.1:9/"))
    session = await reserve(http, orch, dead_rid)
    async with http.get(session["app_url"] + "/x") as r:
        assert r.status == 502


async def test_capacity_is_enforced_with_503(
    http: aiohttp.ClientSession, orch: LocalOrchestrator, runner: FakeRunner
) -> None:
    rid = await registered(http, orch, runner)
    await reserve(http, orch, rid)
    second = await reserve(http, orch, rid)
    async with http.post(f"{orch.url}/apps/{rid}/session") as r:
        assert (r.status, await r.text()) == (503, "no capacity available for runner\n")
    async with http.post(second["control_url"] + "/stop") as r:
        assert r.status == 204
    await reserve(http, orch, rid)


async def test_callbacks_need_the_session_token(
    http: aiohttp.ClientSession, orch: LocalOrchestrator, runner: FakeRunner
) -> None:
    rid = await registered(http, orch, runner)
    sid = (await reserve(http, orch, rid))["session_id"]
    control = f"{orch.url}/runner/{rid}/session/{sid}"
    body = {"channels": [{"name": "in"}]}
    for token in (None, "", "wrong", orch.live_runners.runners[rid].session_token("session_x")):
        headers = {"Livepeer-Session-Token": token} if token is not None else {}
        for method, path in (("POST", "/channels"), ("DELETE", "/channels"), ("POST", "/stop")):
            async with http.request(method, control + path, json=body, headers=headers) as r:
                assert (r.status, await r.text()) == (401, "invalid authorization\n")
    good = {"Livepeer-Session-Token": orch.live_runners.runners[rid].session_token(sid)}
    async with http.post(f"{orch.url}/runner/{rid}/session/session_x/stop", headers=good) as r:
        assert r.status == 404
    async with http.post(control + "/stop", headers=good) as r:
        assert r.status == 204
    assert sid not in orch.live_runners.runners[rid].sessions


async def test_channels_are_created_on_the_trickle_server_and_closed_on_release(
    http: aiohttp.ClientSession, orch: LocalOrchestrator, runner: FakeRunner
) -> None:
    rid = await registered(http, orch, runner)
    sid = (await reserve(http, orch, rid))["session_id"]
    control = f"{orch.url}/runner/{rid}/session/{sid}"
    token = {"Livepeer-Session-Token": orch.live_runners.runners[rid].session_token(sid)}
    wanted = {
        "channels": [
            {"name": "input", "mime_type": "video/MP2T"},
            {"name": "output", "mime_type": "video/MP2T"},
            {"name": "events", "mime_type": "application/json"},
            {"name": " data/x "},
        ]
    }
    async with http.post(control + "/channels", json=wanted, headers=token) as r:
        assert r.status == 200
        channels = (await r.json())["channels"]
    assert [c["name"] for c in channels] == ["input", "output", "events", "data-x"]
    for channel in channels:
        assert channel["channel_name"] == f"{sid}-{channel['name']}"
        assert channel["url"] == f"{orch.url}/ai/trickle/{channel['channel_name']}"
        assert channel["internal_url"] == channel["url"]
        assert orch.trickle.channel(channel["channel_name"]) is not None
    assert channels[3]["mime_type"] == "application/octet-stream"
    # Asking again returns the same channels, unchanged.
    async with http.post(control + "/channels", json=wanted, headers=token) as r:
        assert (await r.json())["channels"] == channels
    # The runner publishes on one, a client reads it back, with our own trickle clients.
    async with TricklePublisher(channels[1]["internal_url"], "video/MP2T") as publisher:
        async with publisher.segment() as seg:
            await seg.write(b"ts bytes")
        async with TrickleSubscriber(channels[1]["url"], start_seq=0) as subscriber:
            segment = await asyncio.wait_for(subscriber.next_segment(), 30)
            assert segment is not None and await segment.read_all() == b"ts bytes"
    # Delete one; release closes the rest.
    async with http.delete(
        control + "/channels", json={"channels": ["events"]}, headers=token
    ) as r:
        assert await r.json() == {"deleted": ["events"]}
    assert orch.trickle.channel(f"{sid}-events") is None
    async with http.delete(control + "/channels", json={"channels": ["nope"]}, headers=token) as r:
        assert (r.status, await r.text()) == (404, "trickle channel not found\n")
    orch.release_session(rid, sid)
    assert not [n for n in orch.trickle.channel_names() if n.startswith(sid)]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"channels": []}, "channels is required"),
        ({}, "channels is required"),
        ({"channels": [{"name": "a"}] * 26}, "channels cannot contain more than 25 entries"),
        ({"channels": [{"name": ""}]}, "trickle channel name is required"),
        (
            {"channels": [{"name": "a.b"}]},
            "trickle channel name may only contain alphanumerics, underscores, or hyphens",
        ),
    ],
)
async def test_bad_channel_requests_are_400(
    http: aiohttp.ClientSession,
    orch: LocalOrchestrator,
    runner: FakeRunner,
    body: dict[str, Any],
    message: str,
) -> None:
    rid = await registered(http, orch, runner)
    sid = (await reserve(http, orch, rid))["session_id"]
    token = {"Livepeer-Session-Token": orch.live_runners.runners[rid].session_token(sid)}
    url = f"{orch.url}/runner/{rid}/session/{sid}/channels"
    async with http.post(url, json=body, headers=token) as r:
        assert (r.status, await r.text()) == (400, message + "\n")


async def test_a_runner_proxy_forwards_with_the_session_headers(
    http: aiohttp.ClientSession, orch: LocalOrchestrator, runner: FakeRunner
) -> None:
    rid = await registered(http, orch, runner)
    sid = (await reserve(http, orch, rid))["session_id"]
    token = {"Livepeer-Session-Token": orch.live_runners.runners[rid].session_token(sid)}
    url = f"{orch.url}/runner/{rid}/session/{sid}/proxy"
    async with http.post(url, json={"target_url": "http://elsewhere:1/"}, headers=token) as r:
        assert r.status == 400
    async with http.post(url, json={"target_url": runner.url + "/p"}, headers=token) as r:
        proxy = await r.json()
    assert proxy["url"] == f"{orch.url}/run/{proxy['proxy_id']}"
    async with http.get(proxy["url"] + "/q") as r:
        assert r.status == 201
    assert runner.seen[-1]["path"] == "/base/p/q"
    assert runner.seen[-1]["headers"]["Livepeer-Session-Id"] == sid


async def test_single_shot_reserves_proxies_one_request_and_releases(
    http: aiohttp.ClientSession, orch: LocalOrchestrator, runner: FakeRunner
) -> None:
    rid = await registered(http, orch, runner, mode="single-shot")
    async with http.post(f"{orch.url}/apps/{rid}/session") as r:
        assert r.status == 200  # go-livepeer reserves on any mode here
    async with http.post(f"{orch.url}/apps/{rid}/app/job", data=b"x") as r:
        assert r.status == 201
    assert runner.seen[-1]["headers"]["Livepeer-Session-Id"].startswith("session_")
    assert len(orch.live_runners.runners[rid].sessions) == 1  # only the reserved one is left
    persistent = await registered(http, orch, runner)
    async with http.post(f"{orch.url}/apps/{persistent}/app/job") as r:
        assert (r.status, await r.text()) == (400, "runner is not single-shot\n")


async def test_a_proxy_runner_is_reached_through_a_random_proxy_url(
    http: aiohttp.ClientSession, orch: LocalOrchestrator, runner: FakeRunner
) -> None:
    rid = await registered(http, orch, runner, proxy=True)
    session = await reserve(http, orch, rid)
    assert session["app_url"].startswith(f"{orch.url}/run/")
    assert session["control_url"] == f"{orch.url}/apps/{rid}/session/{session['session_id']}"
    async with http.post(session["app_url"] + "/start", data=b"x") as r:
        assert r.status == 201
    assert runner.seen[-1]["path"] == "/base/start"
    assert runner.seen[-1]["headers"]["Livepeer-Session-Id"] == session["session_id"]
    async with http.post(session["control_url"] + "/stop") as r:
        assert r.status == 204
    async with http.post(session["app_url"] + "/start") as r:
        assert (r.status, await r.text()) == (404, "live runner proxy not found\n")


async def test_the_app_url_without_its_slash_is_redirected_as_go_does(
    http: aiohttp.ClientSession, orch: LocalOrchestrator, runner: FakeRunner
) -> None:
    rid = await registered(http, orch, runner)
    session = await reserve(http, orch, rid)
    async with http.get(session["app_url"] + "?a=1", allow_redirects=False) as r:
        assert r.status == 301
        assert r.headers["Location"] == session["app_url"].split(orch.url)[1] + "/?a=1"
    async with http.get(session["app_url"] + "?a=1") as r:
        assert r.status == 201
    assert (runner.seen[-1]["path"], runner.seen[-1]["query"]) == ("/base", "a=1")


async def test_a_restart_cuts_proxied_requests_in_flight(
    http: aiohttp.ClientSession, orch: LocalOrchestrator, runner: FakeRunner
) -> None:
    rid = await registered(http, orch, runner)
    session = await reserve(http, orch, rid)
    async with http.get(session["app_url"] + "/events") as r:
        assert await asyncio.wait_for(r.content.readuntil(b"\n\n"), 30) == b"data: first\n\n"
        await orch.restart()
        with pytest.raises(aiohttp.ClientError):
            await asyncio.wait_for(r.content.read(), 30)
    async with http.get(session["app_url"] + "/events") as r:
        assert r.status == 404


async def test_websockets_pass_through_with_the_session_headers(
    http: aiohttp.ClientSession, orch: LocalOrchestrator, runner: FakeRunner
) -> None:
    rid = await registered(http, orch, runner)
    session = await reserve(http, orch, rid)
    async with http.ws_connect(session["app_url"] + "/ws", protocols=("chat",)) as ws:
        assert ws.protocol == "chat"
        first = await asyncio.wait_for(ws.receive_str(), 30)
        assert first == session["session_id"]
        await ws.send_str("hi")
        assert await asyncio.wait_for(ws.receive_str(), 30) == "echo hi"
        await ws.send_bytes(b"abc")
        assert await asyncio.wait_for(ws.receive_bytes(), 30) == b"cba"
    async with http.get(
        session["app_url"] + "/nowhere-ws",
        headers={
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
    ) as r:
        assert r.status == 201  # the runner answered without upgrading: its status comes back


async def test_closing_the_orchestrator_cuts_a_proxied_stream_at_once(
    http: aiohttp.ClientSession, runner: FakeRunner
) -> None:
    orch = LocalOrchestrator(secret=SECRET)
    await orch.start()
    try:
        rid = await registered(http, orch, runner)
        session = await reserve(http, orch, rid)
        async with http.get(session["app_url"] + "/events") as r:
            await asyncio.wait_for(r.content.readuntil(b"\n\n"), 30)
            # close() must not wait for the runner's never-ending answer (aiohttp's 60 s grace).
            await asyncio.wait_for(orch.close(), 30)
            with pytest.raises(aiohttp.ClientError):
                await asyncio.wait_for(r.content.read(), 30)
    finally:
        await orch.close()
