"""The runner API's ``comfystream-video`` job: request checking, the session it creates, and
the output route, over real sockets (the media path itself is exercised in tests/e2e)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from byoc.media_path import NoMediaPath
from tests.byoc.harness import Env, running
from tests.byoc.routes.test_jobs import assert_json_error

INVERT = {
    "1": {"class_type": "LoadTensor", "inputs": {}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveTensor", "inputs": {"images": ["2", 0]}},
}


@pytest.fixture
async def env() -> Env:  # type: ignore[misc]
    async with running(media=NoMediaPath(), capacity=2) as env:
        yield env


async def post(env: Env, body: Any) -> Any:
    return await env.http.post(f"{env.url}/process/request/comfystream-video", json=body)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"input": "nope"}, "'input' must be a JSON object"),
        ({"input": {"prompts": [INVERT], "width": 256}}, "width and height"),
        ({"input": {"media_data": "%%% not base64"}}, "not valid base64"),
        ({"input": {"media_data": ""}}, "base64 string"),
        ({"input": {}, "workspace": "/etc"}, "workspace"),
        ({"input": {}, "subscribe_url": "ftp://x"}, "http(s) URL"),
        (
            {
                "input": {"media_data": base64.b64encode(b"clip").decode()},
                "stream_url": "http://a/b",
            },
            "not both",
        ),
    ],
)
async def test_bad_requests_are_400_json(env: Env, body: Any, needle: str) -> None:
    async with await post(env, body) as r:
        error = await assert_json_error(r, 400)
    assert needle in str(error["error"])
    assert not list(env.runner.runtime.clips.root.iterdir())  # nothing kept for a refusal


async def test_a_live_session_answers_with_its_endpoints(env: Env) -> None:
    body = {
        "input": {"prompts": [INVERT], "width": 256, "height": 256},
        "workspace": str(env.settings.workspace),
        "stream_url": "http://127.0.0.1:9/ai/trickle/in",
        "output_stream_url": "http://127.0.0.1:9/ai/trickle/out",
    }
    async with await post(env, body) as r:
        assert r.status == 200
        answer = await r.json()
    session_id = answer["session_id"]
    assert len(session_id) >= 32
    result = answer["result"]
    assert result["session_id"] == session_id
    assert result["pipeline_ready"] is True
    assert result["whip_endpoint"] == f"/byoc/whip/{session_id}"
    assert result["whep_endpoint"] == f"/byoc/whep/{session_id}"
    assert "comfystream-video" in result["capabilities"]
    assert "output_url" not in result
    async with env.http.get(f"{env.url}/byoc/session/{session_id}/status") as r:
        status = await r.json()
    assert status["capability"] == "comfystream-video"
    assert status["status"] == "ready"
    async with env.http.get(f"{env.url}/byoc/session/{session_id}/output") as r:
        await assert_json_error(r, 409)
    async with env.http.delete(f"{env.url}/byoc/session/{session_id}") as r:
        assert (await r.json())["success"] is True


async def test_a_clip_session_keeps_its_file_until_deleted(env: Env) -> None:
    clip = base64.b64encode(b"\x00\x00\x00\x18ftypmp42").decode()
    async with await post(env, {"input": {"workflow": INVERT, "media_data": clip}}) as r:
        assert r.status == 200
        answer = await r.json()
    session_id = answer["session_id"]
    assert answer["result"]["output_url"] == f"/byoc/session/{session_id}/output"
    clips = env.runner.runtime.clips
    assert clips.input_path(session_id).read_bytes().startswith(b"\x00\x00\x00\x18ftyp")
    async with env.http.delete(f"{env.url}/byoc/session/{session_id}") as r:
        assert r.status == 200
    assert not clips.input_path(session_id).exists()
    async with env.http.get(f"{env.url}/byoc/session/{session_id}/output") as r:
        await assert_json_error(r, 404)


async def test_capacity_counts_video_sessions(env: Env) -> None:
    body = {"input": {}, "stream_url": "http://127.0.0.1:9/ai/trickle/in"}
    for _ in range(2):
        async with await post(env, body) as r:
            assert r.status == 200
    async with await post(env, body) as r:
        await assert_json_error(r, 503)


async def test_a_huge_workflow_is_not_echoed_back(env: Env) -> None:
    """A 10,000-node workflow came back whole in the answer (728 KB) and in the status."""
    huge = {
        str(i): {"class_type": "ImageInvert", "inputs": {"image": [str(i - 1), 0]}}
        for i in range(1, 10_001)
    }
    body = {
        "input": {"prompts": [huge], "width": 256, "height": 256},
        "stream_url": "http://127.0.0.1:9/ai/trickle/in",
        "output_stream_url": "http://127.0.0.1:9/ai/trickle/out",
    }
    async with await post(env, body) as r:
        assert r.status == 200
        raw = await r.read()
    assert len(raw) < 16384, len(raw)
    answer = json.loads(raw)
    echoed = answer["result"]["params"]
    assert echoed["width"] == 256 and echoed["prompts"]["omitted"] is True
    assert echoed["prompts"]["json_bytes"] > 500_000
    async with env.http.get(f"{env.url}/byoc/session/{answer['session_id']}/status") as r:
        assert len(await r.read()) < 16384
    session = env.runner.runtime.sessions.get(answer["session_id"])
    assert session is not None and session.params["prompts"] == [huge]  # the worker gets it all
