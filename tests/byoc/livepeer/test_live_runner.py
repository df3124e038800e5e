"""The Live Runner wire client: Go durations, heartbeat bodies and answers, and the calls over
real HTTP against the stand-in (registration, heartbeat, 401 on a wrong secret, channels)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from byoc.livepeer.live_runner import (
    HeartbeatReply,
    HeartbeatRequest,
    OrchestratorUnreachable,
    Rejected,
    create_channels,
    heartbeat,
    parse_go_duration,
    stop_session,
    unregister,
)
from byoc.livepeer.standin.orchestrator import LocalOrchestrator

SECRET = "orch-secret"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5s", 5.0), ("20s", 20.0), ("1m30s", 90.0), ("500ms", 0.5), ("1h", 3600.0), ("1.5s", 1.5)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "0", "5", "s", "5x", "-5s", "5s garbage"])
def test_not_go_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_go_duration(text)


def test_heartbeat_body_has_price_only_when_priced() -> None:
    free = HeartbeatRequest(runner_url="http://r/live-runner", app="comfystream", capacity=0)
    body = free.to_json()
    assert body["capacity"] == 0 and body["mode"] == "persistent" and "price_info" not in body
    assert "runner_id" not in body  # the orchestrator picks one
    priced = HeartbeatRequest(
        runner_url="http://r", app="a", capacity=2, price=1.5, price_unit="720p", runner_id="x"
    )
    assert priced.to_json()["price_info"] == {"price": 1.5, "currency": "usd", "unit": "720p"}


def test_answers_that_are_not_the_apis_are_unreachable() -> None:
    with pytest.raises(OrchestratorUnreachable):
        HeartbeatReply.from_json({"runner_id": "r", "heartbeat_interval": "soon"})
    with pytest.raises(OrchestratorUnreachable):
        HeartbeatReply.from_json({"runner_id": "r", "session_ids": [1]})
    with pytest.raises(OrchestratorUnreachable):
        HeartbeatReply.from_json(["not", "an", "object"])


@pytest.fixture
async def orch() -> AsyncIterator[LocalOrchestrator]:
    async with LocalOrchestrator(secret=SECRET) as orch:
        yield orch


async def test_register_heartbeat_channels_stop_unregister(orch: LocalOrchestrator) -> None:
    request = HeartbeatRequest(runner_url="http://127.0.0.1:9/live-runner", app="a", capacity=1)
    async with aiohttp.ClientSession() as http:
        with pytest.raises(Rejected) as refused:
            await heartbeat(http, orch.url, "wrong", request)
        assert refused.value.status == 401
        first = await heartbeat(http, orch.url, SECRET, request)
        assert first.heartbeat_secret and first.o2r_url and first.interval_s == 5.0
        again = HeartbeatRequest(**{**request.__dict__, "runner_id": first.runner_id})
        second = await heartbeat(http, orch.url, first.heartbeat_secret, again)
        assert not second.heartbeat_secret and not second.o2r_url  # first registration only
        session_id, _ = orch.live_runners.reserve_session(first.runner_id)
        third = await heartbeat(http, orch.url, first.heartbeat_secret, again)
        assert third.session_ids == (session_id,)
        runner = orch.live_runners.runners[first.runner_id]
        token = runner.session_token(session_id)
        control = f"{orch.url}/runner/{first.runner_id}/session/{session_id}"
        with pytest.raises(Rejected) as bad_token:
            await create_channels(http, control, "wrong", {"input": "video/mp2t"})
        assert bad_token.value.status == 401
        channels = await create_channels(http, control, token, {"input": "video/mp2t"})
        assert channels["input"].url.endswith(f"/ai/trickle/{session_id}-input")
        await stop_session(http, control, token)
        assert session_id not in runner.session_ids()
        await unregister(http, orch.url, first.runner_id, first.heartbeat_secret)
        assert first.runner_id not in orch.live_runners.runners
