"""The stand-in's Live Runner registry over real HTTP: heartbeat shapes and errors, secret
issuance, TTL expiry and sweep, unregister, sessions in the answer, the O2R channel read with our
own trickle client, and what a restart forgets."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from byoc.livepeer.standin.orchestrator import LocalOrchestrator
from byoc.livepeer.standin.orchestrator.gohttp import go_duration
from byoc.livepeer.standin.orchestrator.live_runners import derive_secret
from byoc.livepeer.trickle.errors import ChannelClosedError, TrickleError
from byoc.livepeer.trickle.jsonio import read_json_segments
from byoc.livepeer.trickle.subscriber import TrickleSubscriber
from tests.byoc.harness import wait_until

SECRET = "orch-secret"
BODY: dict[str, Any] = {
    "runner_url": "http://127.0.0.1:9/",
    "app": "comfystream",
    "capacity": 2,
    "mode": "persistent",
}


@pytest.fixture
async def orch() -> AsyncIterator[LocalOrchestrator]:
    orch = LocalOrchestrator(
        secret=SECRET,
        heartbeat_interval_s=0.2,
        heartbeat_ttl_s=30.0,  # expiry tests age a runner by hand; a slow machine never does
        o2r_keepalive_interval_s=0.3,
    )
    await orch.start()
    try:
        yield orch
    finally:
        await orch.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def heartbeat(
    http: aiohttp.ClientSession, orch: LocalOrchestrator, body: Any, auth: str | None = SECRET
) -> tuple[int, Any]:
    headers = {"Authorization": auth} if auth is not None else {}
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with http.post(orch.url + "/runners/heartbeat", data=data, headers=headers) as r:
        raw = await r.read()
        if r.content_type == "application/json":
            return r.status, json.loads(raw)
        return r.status, raw.decode()


async def register(http: aiohttp.ClientSession, orch: LocalOrchestrator) -> dict[str, Any]:
    status, answer = await heartbeat(http, orch, BODY)
    assert status == 200, answer
    return answer


async def reserve(http: aiohttp.ClientSession, orch: LocalOrchestrator, runner_id: str) -> Any:
    async with http.post(f"{orch.url}/apps/{runner_id}/session", json={}) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def test_first_heartbeat_registers_with_secret_o2r_and_go_durations(
    http: aiohttp.ClientSession, orch: LocalOrchestrator
) -> None:
    answer = await register(http, orch)
    assert re.fullmatch(r"runner_[a-z2-7]{8}", answer["runner_id"])
    assert answer["orchestrator"] == orch.url
    assert (answer["heartbeat_interval"], answer["heartbeat_ttl"]) == ("200ms", "30s")
    assert re.fullmatch(r"[a-z2-7]{52}", answer["heartbeat_secret"])
    assert answer["session_ids"] == []
    o2r = answer["o2r"]
    assert set(o2r) == {"name", "channel_name", "url", "mime_type"}  # no internal_url
    assert o2r["name"] == "o2r" and o2r["mime_type"] == "application/json"
    assert re.fullmatch(answer["runner_id"] + r"-[a-z2-7]{16}-o2r", o2r["channel_name"])
    assert o2r["url"] == f"{orch.url}/ai/trickle/{o2r['channel_name']}"
    assert orch.trickle.channel(o2r["channel_name"]) is not None


async def test_later_heartbeats_use_the_heartbeat_secret_and_get_no_secret_again(
    http: aiohttp.ClientSession, orch: LocalOrchestrator
) -> None:
    first = await register(http, orch)
    again = {**BODY, "runner_id": first["runner_id"]}
    status, answer = await heartbeat(http, orch, again, first["heartbeat_secret"])
    assert status == 200
    assert answer["runner_id"] == first["runner_id"]
    assert "heartbeat_secret" not in answer and "o2r" not in answer
    # The orchestrator secret is no heartbeat secret for a known runner.
    status, text = await heartbeat(http, orch, again, SECRET)
    assert (status, text) == (401, "invalid heartbeat authorization\n")


async def test_a_chosen_runner_id_is_kept(
    http: aiohttp.ClientSession, orch: LocalOrchestrator
) -> None:
    status, answer = await heartbeat(http, orch, {**BODY, "runner_id": "  comfy-host-1 "})
    assert status == 200 and answer["runner_id"] == "comfy-host-1"
    assert "comfy-host-1" in orch.live_runners.runners


@pytest.mark.parametrize("auth", [None, "", "Bearer " + SECRET, "wrong"])
async def test_registration_with_a_wrong_secret_is_401(
    http: aiohttp.ClientSession, orch: LocalOrchestrator, auth: str | None
) -> None:
    status, text = await heartbeat(http, orch, BODY, auth)
    assert (status, text) == (401, "invalid registration authorization\n")
    assert not orch.live_runners.runners


async def test_registration_without_an_orchestrator_secret_is_404(
    http: aiohttp.ClientSession,
) -> None:
    async with LocalOrchestrator(secret="") as orch:
        status, text = await heartbeat(http, orch, BODY, "")
    assert (status, text) == (404, "dynamic live runner registration is disabled\n")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"runner_url": "127.0.0.1:9"}, "invalid runner_url"),
        ({"runner_url": "ftp://h/"}, "invalid runner_url"),
        ({"app": ""}, "app must be trimmed"),
        ({"app": " comfystream"}, "app must be trimmed"),
        ({"status": "Ready"}, "status must be lowercase and trimmed"),
        ({"mode": "batch"}, 'mode must be "persistent" or "single-shot"'),
        ({"capacity": -1}, "capacity must be >= 0"),
        ({"metadata": "x" * 1025}, "metadata must be at most 1024 bytes"),
        ({"metadata": "bad \ufffd"}, "metadata must be valid UTF-8"),
    ],
)
async def test_bad_bodies_are_400_even_with_a_wrong_secret(
    http: aiohttp.ClientSession, orch: LocalOrchestrator, change: dict[str, Any], message: str
) -> None:
    status, text = await heartbeat(http, orch, {**BODY, **change}, "wrong")
    assert (status, text) == (400, message + "\n")


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b'{"capacity": "2"}', b'{"app": 1}'])
async def test_undecodable_bodies_are_400(
    http: aiohttp.ClientSession, orch: LocalOrchestrator, body: bytes
) -> None:
    status, _ = await heartbeat(http, orch, body)
    assert status == 400


async def test_capacity_zero_becomes_one_and_single_shot_alias_is_normalised(
    http: aiohttp.ClientSession, orch: LocalOrchestrator
) -> None:
    status, answer = await heartbeat(http, orch, {**BODY, "capacity": 0, "mode": "single_shot"})
    assert status == 200
    runner = orch.live_runners.runners[answer["runner_id"]]
    assert (runner.request.capacity, runner.request.mode) == (1, "single-shot")


async def test_session_ids_in_the_answer_are_the_orchestrators_oldest_first(
    http: aiohttp.ClientSession, orch: LocalOrchestrator
) -> None:
    first = await register(http, orch)
    rid, secret = first["runner_id"], first["heartbeat_secret"]
    one = (await reserve(http, orch, rid))["session_id"]
    two = (await reserve(http, orch, rid))["session_id"]
    # What the runner claims is stored, not believed.
    body = {**BODY, "runner_id": rid, "session_ids": ["session_made_up"]}
    status, answer = await heartbeat(http, orch, body, secret)
    assert status == 200 and answer["session_ids"] == [one, two]
    orch.release_session(rid, one)
    status, answer = await heartbeat(http, orch, body, secret)
    assert answer["session_ids"] == [two]


async def test_a_silent_runner_expires_then_is_swept_and_can_register_again(
    http: aiohttp.ClientSession, orch: LocalOrchestrator
) -> None:
    first = await register(http, orch)
    rid, secret = first["runner_id"], first["heartbeat_secret"]
    session = await reserve(http, orch, rid)
    o2r_name = first["o2r"]["channel_name"]
    body = {**BODY, "runner_id": rid}
    orch.live_runners.runners[rid].last_heartbeat -= 31.0  # silent for longer than the TTL
    await wait_until(lambda: rid not in orch.live_runners.runners, timeout=30)
    assert orch.trickle.channel(o2r_name) is None
    async with http.post(f"{session['control_url']}/app/x") as r:
        assert r.status == 404
    # Swept: the old heartbeat secret is a failed registration; the orchestrator secret
    # registers afresh, same id, new secret, new O2R channel, no sessions.
    status, text = await heartbeat(http, orch, body, secret)
    assert (status, text) == (401, "invalid registration authorization\n")
    status, again = await heartbeat(http, orch, body, SECRET)
    assert status == 200 and again["runner_id"] == rid
    assert again["heartbeat_secret"] != secret
    assert again["o2r"]["channel_name"] != o2r_name
    assert again["session_ids"] == []


async def test_an_expired_runner_not_yet_swept_gets_404(http: aiohttp.ClientSession) -> None:
    async with LocalOrchestrator(
        secret=SECRET, heartbeat_interval_s=3600, heartbeat_ttl_s=1.0
    ) as orch:
        first = await register(http, orch)
        rid = first["runner_id"]
        orch.live_runners.runners[rid].last_heartbeat -= 2.0
        body = {**BODY, "runner_id": rid}
        status, text = await heartbeat(http, orch, body, first["heartbeat_secret"])
        assert (status, text) == (404, "runner not found\n")
        async with http.post(f"{orch.url}/apps/{rid}/session") as r:
            assert r.status == 404
        async with http.get(f"{orch.url}/discovery") as r:
            assert "runners" not in (await r.json())[0]


async def test_heartbeats_keep_a_runner_alive_past_its_ttl(http: aiohttp.ClientSession) -> None:
    async with LocalOrchestrator(
        secret=SECRET, heartbeat_interval_s=0.2, heartbeat_ttl_s=2.0
    ) as orch:
        first = await register(http, orch)
        rid = first["runner_id"]
        body = {**BODY, "runner_id": rid}
        loop = asyncio.get_running_loop()
        end = loop.time() + 2.5 * orch.live_runners.heartbeat_ttl_s
        while loop.time() < end:
            status, _ = await heartbeat(http, orch, body, first["heartbeat_secret"])
            assert status == 200
            await asyncio.sleep(0.1)
        assert rid in orch.live_runners.runners


async def test_unregister_needs_the_heartbeat_secret(
    http: aiohttp.ClientSession, orch: LocalOrchestrator
) -> None:
    first = await register(http, orch)
    rid = first["runner_id"]
    url = f"{orch.url}/runners/{rid}/unregister"
    async with http.post(url, headers={"Authorization": SECRET}) as r:
        assert (r.status, await r.text()) == (401, "invalid authorization\n")
    async with http.post(url, headers={"Authorization": first["heartbeat_secret"]}) as r:
        assert r.status == 204
    assert rid not in orch.live_runners.runners
    assert orch.trickle.channel(first["o2r"]["channel_name"]) is None
    async with http.post(url, headers={"Authorization": first["heartbeat_secret"]}) as r:
        assert (r.status, await r.text()) == (404, "runner not found\n")


async def test_o2r_carries_reservations_releases_and_keepalives_one_json_per_segment(
    http: aiohttp.ClientSession, orch: LocalOrchestrator
) -> None:
    first = await register(http, orch)
    rid = first["runner_id"]
    subscriber = TrickleSubscriber(first["o2r"]["url"], start_seq=0)
    messages: list[Any] = []

    async def read() -> None:
        try:
            async for message in read_json_segments(subscriber, skip_keepalive=False):
                messages.append(message)
        except (ChannelClosedError, TrickleError):
            pass

    reader = asyncio.create_task(read())
    try:
        session = (await reserve(http, orch, rid))["session_id"]
        async with http.post(f"{orch.url}/apps/{rid}/session/{session}/stop") as r:
            assert r.status == 204
        await wait_until(lambda: {"keep": "alive"} in messages, timeout=30)
        events = [m for m in messages if "event" in m]
        assert [(m["event"], m["session"]) for m in events] == [
            ("reserved", session),
            ("released", session),
        ]
        assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z", m["timestamp"]) for m in events)
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await subscriber.close()


async def test_restart_forgets_runners_sessions_and_channels(
    http: aiohttp.ClientSession, orch: LocalOrchestrator
) -> None:
    first = await register(http, orch)
    rid = first["runner_id"]
    session = await reserve(http, orch, rid)
    await orch.restart()
    assert not orch.live_runners.runners
    assert orch.trickle.channel(first["o2r"]["channel_name"]) is None
    async with http.post(f"{session['control_url']}/app/x") as r:
        assert r.status == 404
    body = {**BODY, "runner_id": rid}
    status, _ = await heartbeat(http, orch, body, first["heartbeat_secret"])
    assert status == 401  # what a runner sees after a restart: register again
    status, again = await heartbeat(http, orch, body, SECRET)
    assert status == 200 and again["session_ids"] == []


def test_secrets_are_lowercase_base32_hmacs() -> None:
    assert derive_secret(b"k", "heartbeat") == derive_secret(b"k", "heartbeat")
    assert derive_secret(b"k", "heartbeat") != derive_secret(b"k", "session:x")
    assert go_duration(5) == "5s" and go_duration(0.25) == "250ms"
