"""Streams without media, through the local orchestrator stand-in and its trickle server:
cases S1-S5, S8, S9, S11-S15 of the BYOC conformance list, and the other ways a stream ends."""

from __future__ import annotations

import asyncio
import json

import pytest

from byoc.livepeer.trickle import TricklePublisher
from byoc.sessions import SessionState
from byoc.streams import StreamController
from tests.byoc.harness import Env, running, wait_until
from tests.byoc.stream_helpers import (
    EventReader,
    publish_control,
    start_via_orch,
    stop_via_orch,
    update_via_orch,
)

EVENT_KEYS = {
    "type",
    "stream_id",
    "state",
    "params",
    "fps_in",
    "fps_out",
    "frames_dropped",
    "latency_ms",
    "restarts",
    "last_error",
    "timestamp",
    "stages",  # detail beyond go-livepeer's status map
    "dropped",
    "resumed",  # times a restarted runner picked the stream up again
}


@pytest.fixture
async def env() -> Env:  # type: ignore[misc]
    async with running() as env:
        yield env


def state_of(env: Env, stream_id: str) -> SessionState | None:
    session = env.runner.runtime.sessions.get(stream_id)
    return session.state if session is not None else None


async def test_s1_full_start_gets_every_url_and_answers_at_once(env: Env) -> None:
    async with await start_via_orch(env, "s1", {"params": {"prompts": [{"1": {}}]}}) as r:
        assert r.status == 200 and await r.read() == b""
        base = f"{env.orch_url}/ai/trickle/"
        assert r.headers["X-Control-Url"] == base + "s1-control"
        assert r.headers["X-Events-Url"] == base + "s1-events"
        assert r.headers["X-Publish-Url"] == base + "s1"
        assert r.headers["X-Subscribe-Url"] == base + "s1-out"
        assert r.headers["X-Data-Url"] == base + "s1-data"
    controller = env.runner.runtime.streams.get("s1")
    assert controller is not None
    spec = controller.spec
    assert (spec.subscribe_url, spec.publish_url, spec.data_url) == (
        base + "s1",
        base + "s1-out",
        base + "s1-data",
    )
    assert spec.params == {"prompts": [{"1": {}}]}
    await wait_until(lambda: state_of(env, "s1") is SessionState.READY)
    session = env.runner.runtime.sessions.get("s1")
    assert session is not None and session.external_id  # the orchestrator's id is kept


async def test_s2_s4_minimal_start_still_subscribes_control_and_publishes_events(env: Env) -> None:
    async with await start_via_orch(env, "s2", {"params": None}, parameters={}) as r:
        assert r.status == 200
        assert "X-Publish-Url" not in r.headers and "X-Data-Url" not in r.headers
        events_url = r.headers["X-Events-Url"]
    controller = env.runner.runtime.streams.get("s2")
    assert controller is not None and controller.spec.subscribe_url is None
    reader = EventReader(events_url)
    try:
        first = await reader.next(timeout=60)
        assert first is not None
        assert first["queue_event_type"] == "ai_stream_events"
        assert set(first["event"]) == EVENT_KEYS
        assert first["event"]["type"] == "status" and first["event"]["stream_id"] == "s2"
        assert first["event"]["params"] == {}
        assert (first["event"]["fps_in"], first["event"]["frames_dropped"]) == (0.0, 0)
        # Then periodically (events_interval_s = 0.3 here), and the state change to ready.
        ready = await reader.until(lambda e: e["state"] == "ready")
        later = await reader.next()
        assert later is not None and later["event"]["timestamp"] >= ready["event"]["timestamp"]
    finally:
        await reader.close()
    # The stream keeps its control subscription: keepalives arrive and count as activity.
    before = controller.last_control_at
    await wait_until(lambda: controller.last_control_at > before, timeout=60)


@pytest.mark.parametrize("params", [None, {}, {"width": 64, "height": 48, "prompts": "{}"}])
async def test_s3_unknown_keys_ignored_and_params_null_empty_or_object(
    env: Env, params: object
) -> None:
    orch = env.orch
    assert orch is not None
    for name in ("s3-control", "s3-events"):
        orch.trickle.create_channel(name, "application/json")
    base = f"{env.orch_url}/ai/trickle/"
    body = {
        "gateway_request_id": "s3",
        "control_url": base + "s3-control",
        "events_url": base + "s3-events",
        "params": params,
        "something_new": {"x": 1},
        "manifest_id": "m",
    }
    async with env.http.post(
        env.url + "/stream/start", json=body, headers={"X-Stream-Id": "s3"}
    ) as r:
        assert r.status == 200
        assert (await r.json())["stream_id"] == "s3"
    session = env.runner.runtime.sessions.get("s3")
    assert session is not None and session.params == (params or {})


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1]",
        b'{"control_url": "http://x/c"}',
        b'{"gateway_request_id": "z", "control_url": "ftp://x", "events_url": "http://x/e"}',
        b'{"gateway_request_id": "z", "control_url": "http://x/c", "events_url": "http://x/e", "params": 5}',
        b'{"gateway_request_id": "z", "control_url": "http://x/c", "events_url": "http://x/e", "params": {"width": 5}}',
    ],
)
async def test_bad_start_bodies_are_400(env: Env, body: bytes) -> None:
    async with env.http.post(env.url + "/stream/start", data=body) as r:
        assert r.status == 400 and (await r.json())["status_code"] == 400
    assert env.runner.runtime.sessions.live_streams() == 0


async def test_s5_keepalives_ignored_and_control_params_applied(env: Env) -> None:
    async with await start_via_orch(env, "s5") as r:
        control_url, events_url = r.headers["X-Control-Url"], r.headers["X-Events-Url"]
    reader = EventReader(events_url)
    try:
        await reader.until(lambda e: e["state"] == "ready")
        await publish_control(control_url, {"prompts": "new workflow", "width": 320, "height": 240})
        event = await reader.until(lambda e: e["params"].get("width") == 320)
        assert event["event"]["params"] == {"prompts": "new workflow", "width": 320, "height": 240}
        await publish_control(control_url, {"keep": "alive"})
        await publish_control(control_url, {"width": 1})  # invalid: reported, stream goes on
        await reader.until(lambda e: (e["last_error"] or "").startswith("params rejected"))
    finally:
        await reader.close()
    assert state_of(env, "s5") is SessionState.READY


DEEP = b"[" * 5000 + b"]" * 5000


async def test_deep_json_on_every_stream_route_is_a_400_not_a_500(env: Env) -> None:
    """json.loads raises RecursionError (not ValueError) at this depth; it used to be a 500."""
    deep_start = (
        b'{"gateway_request_id": "deep", "control_url": "http://x/c", "events_url": '
        b'"http://x/e", "params": ' + b"{" * 3000 + b"}" * 3000 + b"}"
    )
    for body in (DEEP, deep_start):
        async with env.http.post(env.url + "/stream/start", data=body) as r:
            assert r.status == 400, await r.text()
            assert (await r.json())["status_code"] == 400
    async with await start_via_orch(env, "deep") as r:
        assert r.status == 200
    async with env.http.post(
        env.url + "/stream/params", data=DEEP, headers={"X-Stream-Id": "deep"}
    ) as r:
        assert r.status == 400 and "nested deeper" in (await r.json())["error"]
    async with env.http.post(
        env.url + "/stream/params", data=b'{"w": 1e400}', headers={"X-Stream-Id": "deep"}
    ) as r:
        assert r.status == 400 and "out of range" in (await r.json())["error"]
    # A stop body that is not usable JSON is a reason text; the stop itself works.
    async with env.http.post(
        env.url + "/stream/stop", data=DEEP, headers={"X-Stream-Id": "deep"}
    ) as r:
        assert r.status == 200
    assert state_of(env, "deep") is SessionState.STOPPED


async def test_a_bad_control_message_is_skipped_and_later_ones_apply(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """Deep JSON on the control channel used to kill the control loop silently."""
    async with await start_via_orch(env, "ctl") as r:
        control_url, events_url = r.headers["X-Control-Url"], r.headers["X-Events-Url"]
    reader = EventReader(events_url)
    try:
        await reader.until(lambda e: e["state"] == "ready")
        async with TricklePublisher(
            control_url,
            "application/json",
            start_seq=None,
            verify_tls=False,
            delete_on_close=False,
        ) as pub:
            async with pub.segment() as seg:
                await seg.write(DEEP)
            assert await seg.wait()
        await publish_control(control_url, {"width": 64, "height": 48})
        await reader.until(lambda e: e["params"].get("width") == 64)
    finally:
        await reader.close()
    assert state_of(env, "ctl") is SessionState.READY
    assert any(
        "ctl" in r.getMessage() and "control message ignored" in r.getMessage()
        for r in caplog.records
    )


async def test_a_stream_task_that_dies_fails_the_stream_at_once(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not at the next sweep (60 s here): the stream fails with the task's error."""

    async def dies(self: StreamController) -> None:
        await asyncio.sleep(0.2)
        raise RuntimeError("injected fault")

    monkeypatch.setattr(StreamController, "_silence_watch", dies)
    async with await start_via_orch(env, "dies") as r:
        assert r.status == 200
    await wait_until(lambda: state_of(env, "dies") is SessionState.FAILED, timeout=10)
    session = env.runner.runtime.sessions.get("dies")
    assert session is not None and "injected fault" in (session.error or "")
    await wait_until(lambda: not env.runner.runtime.streams.controllers)


async def test_s8_params_through_the_orchestrator(env: Env) -> None:
    async with await start_via_orch(env, "s8") as r:
        assert r.status == 200
    async with await update_via_orch(
        env, "s8", b'{"prompts": {"1": {}}, "width": 512, "height": 512}'
    ) as r:
        assert r.status == 200
        body = json.loads(await r.read())  # the runner's body, relayed to the client
        assert body["params"] == {"prompts": {"1": {}}, "width": 512, "height": 512}
    async with await update_via_orch(env, "s8", b'{"width": 512}') as r:
        assert r.status == 400
    async with await update_via_orch(env, "s8", b"[1, 2]") as r:
        assert r.status == 400
    async with await update_via_orch(env, "unknown", b"{}") as r:
        assert r.status == 404
    async with env.http.post(env.url + "/stream/params", json={"a": 1}) as r:
        assert r.status == 400  # no X-Stream-Id


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(b'{"reason": "client stop"}', "application/json"), (b"stream ended", None), (b"", None)],
)
async def test_s9_stop_with_json_text_or_empty_body_frees_the_slot(
    body: bytes, content_type: str | None
) -> None:
    async with running(capacity=1) as env:
        async with await start_via_orch(env, "s9") as r:
            assert r.status == 200
        if content_type is None:
            async with await stop_via_orch(env, "s9", body) as r:
                assert r.status == 200
        else:
            async with env.http.post(
                env.url + "/stream/stop",
                data=body,
                headers={"X-Stream-Id": "s9", "Content-Type": content_type},
            ) as r:
                assert r.status == 200
        assert state_of(env, "s9") is SessionState.STOPPED
        assert not env.runner.runtime.streams.controllers
        # Idempotent: again, and for an id never seen.
        for stream_id in ("s9", "never-started"):
            async with env.http.post(
                env.url + "/stream/stop", data=b"", headers={"X-Stream-Id": stream_id}
            ) as r:
                assert r.status == 200
        async with env.http.post(env.url + "/stream/stop", data=b"") as r:
            assert r.status == 200
        async with await start_via_orch(env, "s9-next") as r:
            assert r.status == 200  # the slot was freed


async def test_s11_silent_control_ends_the_stream() -> None:
    async with running(keepalive_interval_s=3600, control_silence_timeout_s=1.0) as env:
        async with await start_via_orch(env, "s11") as r:
            events_url = r.headers["X-Events-Url"]
        reader = EventReader(events_url)
        try:
            final = await reader.until(lambda e: e["state"] == "stopped", timeout=60)
        finally:
            await reader.close()
        assert final["event"]["stream_id"] == "s11"
        assert state_of(env, "s11") is SessionState.STOPPED
        assert env.runner.runtime.sessions.live_streams() == 0


async def test_control_channel_gone_ends_the_stream(env: Env) -> None:
    assert env.orch is not None
    async with await start_via_orch(env, "gone") as r:
        assert r.status == 200
    await wait_until(lambda: state_of(env, "gone") is SessionState.READY)
    env.orch.trickle.close_channel("gone-control")  # 404 / Lp-Trickle-Closed from now on
    await wait_until(lambda: state_of(env, "gone") is SessionState.STOPPED, timeout=60)


async def test_events_channel_gone_ends_the_stream(env: Env) -> None:
    assert env.orch is not None
    async with await start_via_orch(env, "ev") as r:
        assert r.status == 200
    await wait_until(lambda: state_of(env, "ev") is SessionState.READY)
    env.orch.trickle.close_channel("ev-events")
    await wait_until(lambda: state_of(env, "ev") is SessionState.STOPPED, timeout=60)


async def test_s12_start_at_capacity_is_503_and_the_first_stream_is_unaffected() -> None:
    async with running(capacity=1) as env:
        async with await start_via_orch(env, "first") as r:
            assert r.status == 200
            events_url = r.headers["X-Events-Url"]
        async with await start_via_orch(env, "second") as r:
            assert r.status == 503  # relayed by O; the gateway tries another orchestrator
        async with env.http.post(
            env.url + "/stream/start",
            json={
                "gateway_request_id": "third",
                "control_url": "http://127.0.0.1:1/c",
                "events_url": "http://127.0.0.1:1/e",
            },
        ) as r:
            assert r.status == 503 and (await r.json())["status_code"] == 503
        assert state_of(env, "first") is SessionState.READY
        reader = EventReader(events_url)
        try:
            await reader.until(lambda e: e["state"] == "ready")
        finally:
            await reader.close()
        async with env.http.get(env.url + "/health") as r:
            assert (await r.json())["active_streams"] == 1


async def test_s13_https_orchestrator_with_a_self_signed_certificate() -> None:
    async with running(tls=True) as env:
        assert env.orch_url.startswith("https://")
        async with await start_via_orch(env, "tls") as r:
            assert r.status == 200
            assert r.headers["X-Control-Url"].startswith("https://")
            control_url, events_url = r.headers["X-Control-Url"], r.headers["X-Events-Url"]
        reader = EventReader(events_url)
        try:
            await reader.until(lambda e: e["state"] == "ready")
            await publish_control(control_url, {"width": 16, "height": 16})
            await reader.until(lambda e: e["params"] == {"width": 16, "height": 16})
        finally:
            await reader.close()
        async with await env.job("text-reversal", {"text": "tls"}) as r:
            assert r.status == 200
        async with await stop_via_orch(env, "tls") as r:
            assert r.status == 200
        assert state_of(env, "tls") is SessionState.STOPPED


async def test_s14_a_new_start_for_a_live_id_replaces_it_cleanly() -> None:
    from byoc.livepeer.standin.orchestrator import LocalOrchestrator

    async with running(capacity=1) as env:
        async with await start_via_orch(env, "swap") as r:
            old_events = r.headers["X-Events-Url"]
        old = env.runner.runtime.streams.get("swap")
        assert old is not None
        # The gateway swaps to another orchestrator, which starts the same stream id.
        other = LocalOrchestrator(secret="orch-secret", keepalive_interval_s=0.2)
        await other.start()
        try:
            other.registry.capabilities.update(env.orch.registry.capabilities if env.orch else {})
            async with await start_via_orch(env, "swap", orch_url=other.url) as r:
                assert r.status == 200  # at capacity 1: the replaced stream's slot is reused
                new_events = r.headers["X-Events-Url"]
            new = env.runner.runtime.streams.get("swap")
            assert new is not None and new is not old
            assert old.ended and old.session.state is SessionState.STOPPED
            assert not old.tasks_alive()
            assert new.spec.events_url == new_events != old_events
            reader = EventReader(old_events)
            try:
                final = await reader.until(lambda e: e["state"] == "stopped")
                assert final["event"]["stream_id"] == "swap"
            finally:
                await reader.close()
            await wait_until(lambda: state_of(env, "swap") is SessionState.READY)
            assert env.runner.runtime.sessions.live_streams() == 1
        finally:
            await other.close()


async def test_s15_token_on_stream_routes_and_a_401_drops_the_capability() -> None:
    async with running(token="tok", register_interval_s=3600) as env:
        assert env.orch is not None
        async with await start_via_orch(env, "auth") as r:
            assert r.status == 200  # O sends the Bearer token it was registered with
        for path in ("/stream/start", "/stream/params", "/stream/stop"):
            async with env.http.post(
                env.url + path, data=b"{}", headers={"X-Stream-Id": "auth"}
            ) as r:
                assert r.status == 401
        async with env.http.get(env.url + "/stream/status") as r:
            assert r.status == 401
        env.orch.registry.capabilities["comfystream-video"].token = "stale"
        async with await start_via_orch(env, "auth-2") as r:
            assert r.status == 500  # O: worker failure, capability removed
        # We answered 401, so we register again at once.
        await wait_until(lambda: env.orch.registry.get("comfystream-video") is not None, timeout=60)
        assert env.orch.registry.capabilities["comfystream-video"].token == "tok"


async def test_stream_status_and_session_routes(env: Env) -> None:
    async with await start_via_orch(env, "st", {"params": {"width": 16, "height": 16}}) as r:
        assert r.status == 200
    await wait_until(lambda: state_of(env, "st") is SessionState.READY)
    async with env.http.get(env.url + "/stream/status", headers={"X-Stream-Id": "st"}) as r:
        status = await r.json()
    assert status["state"] == "ready" and status["params"] == {"width": 16, "height": 16}
    async with env.http.get(env.url + "/stream/status") as r:
        assert await r.json() == {"active_streams": 1, "streams": {"st": "ready"}}
    async with env.http.get(env.url + "/byoc/session/st/status") as r:
        body = await r.json()
    assert (
        body["session_id"] == "st"
        and body["capability"] == "comfystream-video"
        and body["status"] == "ready"
    )
    async with env.http.get(env.url + "/byoc-stats") as r:
        stats = await r.json()
    assert stats["st"]["status"] == "ready" and stats["st"]["has_result"] is False
    async with env.http.delete(env.url + "/byoc/session/st") as r:
        assert await r.json() == {"success": True, "message": "Session cleaned up"}
    assert not env.runner.runtime.streams.controllers
    async with env.http.get(env.url + "/byoc/session/st/status") as r:
        assert r.status == 404 and (await r.json())["status_code"] == 404
    async with env.http.delete(env.url + "/byoc/session/st") as r:
        assert r.status == 404
    async with env.http.get(env.url + "/stream/status", headers={"X-Stream-Id": "nope"}) as r:
        assert r.status == 404


async def test_runner_shutdown_ends_streams_with_a_final_event() -> None:
    async with running() as env:
        async with await start_via_orch(env, "bye") as r:
            events_url = r.headers["X-Events-Url"]
        await wait_until(lambda: state_of(env, "bye") is SessionState.READY)
        reader = EventReader(events_url)
        await reader.until(lambda e: e["state"] == "ready")
        runner = env.runner
    # Leaving ``running`` stopped the runner; the stand-in closed after it.
    session = runner.runtime.sessions.get("bye")
    assert session is not None and session.state is SessionState.STOPPED
    await reader.close()


async def test_concurrent_starts_for_one_id_leave_exactly_one_stream(env: Env) -> None:
    assert env.orch is not None
    for name in ("dup-control", "dup-events"):
        env.orch.trickle.create_channel(name, "application/json")
    base = f"{env.orch_url}/ai/trickle/"
    body = {
        "gateway_request_id": "dup",
        "control_url": base + "dup-control",
        "events_url": base + "dup-events",
    }

    async def start() -> int:
        async with env.http.post(env.url + "/stream/start", json=body) as r:
            return r.status

    statuses = await asyncio.gather(*(start() for _ in range(5)))
    assert statuses == [200] * 5
    assert list(env.runner.runtime.streams.controllers) == ["dup"]
    assert env.runner.runtime.sessions.live_streams() == 1
