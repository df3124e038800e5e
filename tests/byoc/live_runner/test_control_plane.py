"""The runner as a Live Runner against the local orchestrator stand-in, over real sockets:
registration by heartbeat, reconciliation after an orchestrator restart, the app API through
the session proxy, session tokens, capacity shared with BYOC, releases and the idle timeout.

The runner runs in-process with no media workers (streams are control plane only); the frames
of a Live Runner stream are checked in ``tests/e2e/test_live_runner_stream.py``."""

from __future__ import annotations

from byoc.live_runner.app_api import STREAM_CHANNELS
from byoc.livepeer.live_runner import (
    HEADER_SESSION_CONTROL,
    HEADER_SESSION_ID,
    HEADER_SESSION_TOKEN,
)
from byoc.sessions import SessionState
from tests.byoc.harness import Env, wait_until
from tests.byoc.live_runner.helpers import (
    AppSession,
    call,
    client_stop,
    live_runner_env,
    reserve,
    reserve_status,
    wait_registered,
)
from tests.byoc.stream_helpers import start_via_orch

START = {"width": 64, "height": 64}


def held_ids(env: Env) -> set[str]:
    control_plane = env.runner.live_runner
    assert control_plane is not None
    return {s.id for s in control_plane.active}


def state_of(env: Env, session_id: str) -> SessionState | None:
    session = env.runner.runtime.sessions.get(session_id)
    return None if session is None else session.state


async def started(env: Env, runner_id: str) -> AppSession:
    assert env.orch is not None
    session = await reserve(env.http, env.orch.url, runner_id)
    status, body = await call(env.http, session, "POST", "start", json=START)
    assert status == 200, body
    return session


async def test_registration_announces_app_capacity_url_and_keeps_the_runner_id(tmp_path) -> None:
    async with live_runner_env(state_dir=tmp_path / "state", capacity=3) as env:
        assert env.orch is not None
        runner_id = await wait_registered(env)
        runner = env.orch.live_runners.runners[runner_id]
        request = runner.request
        assert request.app == "comfystream"
        assert request.capacity == 3
        assert request.mode == "persistent"
        assert request.runner_url == env.url + "/live-runner"
        async with env.http.get(env.url + "/health") as r:
            health = await r.json()
        state = health["live_runner"]["orchestrators"][env.orch.url]
        assert state["state"] == "registered" and state["runner_id"] == runner_id
        async with env.http.get(env.url + "/metrics") as r:
            text = await r.text()
        assert (
            f'byoc_live_runner_heartbeat_state{{orchestrator="{env.orch.url}",state="registered"}} 1.0'
            in text
        )
    # A new process on the same state directory heartbeats with the same id.
    async with live_runner_env(state_dir=tmp_path / "state") as env:
        assert await wait_registered(env) == runner_id


async def test_stream_through_the_proxy_starts_updates_reports_and_stops() -> None:
    async with live_runner_env() as env:
        assert env.orch is not None
        runner_id = await wait_registered(env)
        session = await reserve(env.http, env.orch.url, runner_id)
        await wait_until(lambda: session.session_id in held_ids(env), timeout=30)
        status, body = await call(env.http, session, "POST", "start", json=START)
        assert status == 200, body
        assert set(body["channels"]) == set(STREAM_CHANNELS)
        assert all(u.startswith(env.orch.url + "/ai/trickle/") for u in body["channels"].values())
        # Every URL we answer is relative: it resolves under the client's app URL.
        for key in ("status_url", "update_url", "stop_url", "whep_url"):
            assert "://" not in body[key] and not body[key].startswith("/")
        status, body = await call(env.http, session, "POST", "update", json={"prompts": "x"})
        assert status == 200 and body["params"]["prompts"] == "x"
        status, body = await call(env.http, session, "GET", "status")
        assert status == 200 and body["control_plane"] == "live-runner"
        async with env.http.get(f"{env.url}/byoc/session/{session.session_id}/status") as r:
            assert (await r.json())["control_plane"] == "live-runner"
        async with env.http.get(f"{env.url}/byoc-stats") as r:
            assert (await r.json())[session.session_id]["control_plane"] == "live-runner"
        status, body = await call(env.http, session, "POST", "stop")
        assert status == 200 and body["status"] == "stopped"
        assert state_of(env, session.session_id) is SessionState.STOPPED
        # The client's stop releases the session: the orchestrator tells us on O2R.
        assert await client_stop(env.http, session) == 204
        await wait_until(lambda: session.session_id not in held_ids(env), timeout=30)


async def test_wrong_session_token_is_refused() -> None:
    async with live_runner_env() as env:
        assert env.orch is not None
        runner_id = await wait_registered(env)
        session = await reserve(env.http, env.orch.url, runner_id)
        await wait_until(lambda: session.session_id in held_ids(env), timeout=30)
        control = f"{env.orch.url}/runner/{runner_id}/session/{session.session_id}"
        forged = {
            HEADER_SESSION_ID: session.session_id,
            HEADER_SESSION_TOKEN: "not-the-token",
            HEADER_SESSION_CONTROL: control,
        }
        # Not pinned yet: the orchestrator refuses the token when we confirm it.
        async with env.http.get(env.url + "/live-runner/status", headers=forged) as r:
            assert r.status == 401
            assert (await r.json())["status_code"] == 401
        # Through the proxy the right token is pinned...
        status, _ = await call(env.http, session, "GET", "status")
        assert status == 200
        # ...and any other one is refused from then on, without asking the orchestrator.
        async with env.http.get(env.url + "/live-runner/status", headers=forged) as r:
            assert r.status == 403
        # A session id nobody reserved, and no headers at all.
        unknown = {**forged, HEADER_SESSION_ID: "session_nobody"}
        async with env.http.post(env.url + "/live-runner/start", headers=unknown, json=START) as r:
            assert r.status == 404
        async with env.http.post(env.url + "/live-runner/start", json=START) as r:
            assert r.status == 401


async def test_capacity_is_shared_with_byoc() -> None:
    async with live_runner_env(capacity=4) as env:
        assert env.orch is not None
        orch = env.orch
        runner_id = await wait_registered(env)
        for stream_id in ("byoc-1", "byoc-2"):
            async with await start_via_orch(env, stream_id) as r:
                assert r.status == 200, await r.text()
        await started(env, runner_id)
        await started(env, runner_id)
        # Our heartbeat now says: 2 Live Runner sessions held, no slot free.
        await wait_until(lambda: orch.live_runners.runners[runner_id].request.capacity == 2)
        # The fifth from BYOC: the runner answers 503.
        async with await start_via_orch(env, "byoc-3") as r:
            assert r.status == 503, await r.text()
        # The fifth from Live Runner: the orchestrator answers 503 (it counts our sessions).
        assert await reserve_status(env.http, orch.url, runner_id) == 503
        assert env.runner.runtime.sessions.live_streams() == 4


async def test_full_runner_answers_a_reservation_it_could_not_hold_with_503() -> None:
    async with live_runner_env(capacity=1) as env:
        assert env.orch is not None
        orch = env.orch
        runner_id = await wait_registered(env)
        control_plane = env.runner.live_runner
        assert control_plane is not None
        heartbeats = control_plane.heartbeats.orchestrators[0]
        async with await start_via_orch(env, "byoc-only") as r:
            assert r.status == 200
        assert control_plane.capacity.heartbeat_capacity() == 0
        # Sent as 0, read as 1: the orchestrator may still reserve one session.
        sent = heartbeats.heartbeats
        await wait_until(lambda: heartbeats.heartbeats >= sent + 2)
        session = await reserve(env.http, orch.url, runner_id)
        status, body = await call(env.http, session, "POST", "start", json=START)
        assert status == 503, body
        # It is released on both sides: nothing lingers at the orchestrator.
        await wait_until(lambda: not orch.live_runners.runners[runner_id].session_ids())
        assert session.session_id not in held_ids(env)


async def test_released_session_stops_its_stream() -> None:
    async with live_runner_env() as env:
        assert env.orch is not None
        runner_id = await wait_registered(env)
        session = await started(env, runner_id)
        env.orch.release_session(runner_id, session.session_id)
        await wait_until(lambda: state_of(env, session.session_id) is SessionState.STOPPED)
        assert session.session_id not in held_ids(env)
        status, _ = await call(env.http, session, "GET", "status")
        assert status == 404  # the proxy no longer knows it


async def test_orchestrator_restart_ends_its_sessions_and_we_register_again() -> None:
    async with live_runner_env() as env:
        assert env.orch is not None
        orch = env.orch
        control_plane = env.runner.live_runner
        assert control_plane is not None
        runner_id = await wait_registered(env)
        first = await started(env, runner_id)
        old_reader = control_plane._readers[orch.url].url
        await orch.restart()
        # It forgot us: the next heartbeat gets 401, we register again with the same id...
        await wait_until(lambda: runner_id in orch.live_runners.runners, timeout=30)
        # ...and its (empty) session list ends ours cleanly.
        await wait_until(lambda: state_of(env, first.session_id) is SessionState.STOPPED)
        assert first.session_id not in held_ids(env)
        # The new registration's O2R channel is the one followed now.
        new_o2r = orch.live_runners.runners[runner_id].o2r
        assert new_o2r is not None
        await wait_until(lambda: control_plane._readers[orch.url].url != old_reader)
        assert control_plane._readers[orch.url].url.endswith(new_o2r.channel_name)
        # A session reserved now works as before.
        second = await started(env, runner_id)
        assert state_of(env, second.session_id) is SessionState.READY


async def test_idle_session_is_stopped_and_released() -> None:
    async with live_runner_env(live_runner_idle_timeout_s=1.0) as env:
        assert env.orch is not None
        orch = env.orch
        runner_id = await wait_registered(env)
        session = await started(env, runner_id)
        await wait_until(lambda: state_of(env, session.session_id) is SessionState.STOPPED)
        assert session.session_id not in held_ids(env)
        # The orchestrator was told too.
        await wait_until(lambda: not orch.live_runners.runners[runner_id].session_ids())


async def test_requests_keep_a_session_from_the_idle_timeout() -> None:
    async with live_runner_env(live_runner_idle_timeout_s=3.0) as env:
        assert env.orch is not None
        runner_id = await wait_registered(env)
        session = await started(env, runner_id)
        control_plane = env.runner.live_runner
        assert control_plane is not None
        held = control_plane.active.get(session.session_id)
        assert held is not None
        for _ in range(4):
            before = held.last_activity
            status, _ = await call(env.http, session, "GET", "status")
            assert status == 200
            assert held.last_activity > before
        assert session.session_id in held_ids(env)
