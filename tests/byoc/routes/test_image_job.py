"""The parent side of ``comfystream-image``: the request goes to the infer worker over the real
supervisor and control channel, and the answer comes back as JSON, PNG or Server-Sent Events.

The worker here is ``tests.byoc.job_workers.image_worker``, which stands in for the infer
worker's job handler (it inverts the image with Pillow); everything between the HTTP client and
that handler is the real thing, including the local orchestrator's SSE relay.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import signal

import aiohttp
import pytest
from PIL import Image

from byoc.sessions import SessionState
from tests.byoc.harness import Env, running, wait_until
from tests.byoc.job_workers import image_worker


def png_bytes(width: int, height: int, *, noise: bool = False) -> bytes:
    if noise:
        image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    else:
        image = Image.new("RGB", (width, height), (10, 200, 30))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def job_body(png: bytes, **knobs: object) -> dict[str, object]:
    body: dict[str, object] = {"image": base64.b64encode(png).decode(), "workflow": {}}
    if knobs:
        body["test"] = knobs
    return body


def inverted(png: bytes) -> bytes:
    from PIL import ImageOps

    buf = io.BytesIO()
    ImageOps.invert(Image.open(io.BytesIO(png)).convert("RGB")).save(buf, format="PNG")
    return buf.getvalue()


async def read_sse(response: aiohttp.ClientResponse) -> list[bytes]:
    lines = []
    async for raw in response.content:
        lines.append(raw)
    return lines


def events_of(lines: list[bytes]) -> list[tuple[str, str]]:
    """(event name, data) pairs; a data line without an event name is ('message', data)."""
    events, name = [], "message"
    for raw in lines:
        line = raw.rstrip(b"\r\n").decode()
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            events.append((name, line[len("data: ") :]))
            name = "message"
    return events


@pytest.fixture
async def env() -> Env:  # type: ignore[misc]
    async with running(workers={"infer": image_worker}) as env:
        await wait_until(lambda: env.runner.supervisor.is_ready("infer"), timeout=60)
        yield env


async def test_json_answer_from_the_worker(env: Env) -> None:
    png = png_bytes(8, 6)
    async with await env.job("comfystream-image", job_body(png)) as r:
        assert r.status == 200
        result = await r.json()
        session_id = json.loads(r.headers["X-Metadata"])["session_id"]
    assert (result["width"], result["height"]) == (8, 6)
    assert base64.b64decode(result["image"]) == inverted(png)
    assert result["elapsed_ms"] >= 0
    async with env.http.get(f"{env.url}/byoc/session/{session_id}/status") as r:
        status = await r.json()
    assert status["status"] == "completed"
    assert status["result"]["width"] == 8 and "image" not in status["result"]


async def test_png_answer_by_header_and_by_body_key(env: Env) -> None:
    png = png_bytes(5, 5)
    async with env.http.post(
        env.url + "/comfystream-image", json=job_body(png), headers={"Accept": "image/png"}
    ) as r:
        assert r.status == 200 and r.content_type == "image/png"
        assert await r.read() == inverted(png)
    body = {**job_body(png), "accept": "image/png"}  # go-livepeer does not forward Accept
    async with await env.job("comfystream-image", body) as r:
        assert r.status == 200 and r.content_type == "image/png"
        assert await r.read() == inverted(png)


async def test_sse_through_the_orchestrator_keeps_lines_short_and_ends_with_done(env: Env) -> None:
    png = png_bytes(256, 256, noise=True)  # ~260 KB of base64: several parts
    body = {**job_body(png, progress=3), "accept": "text/event-stream"}
    async with await env.job("comfystream-image", body) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
        lines = await read_sse(r)
    assert all(len(line) < 64 * 1024 for line in lines)
    events = events_of(lines)
    assert [name for name, _ in events[:3]] == ["progress"] * 3
    assert json.loads(events[0][1]) == {"node": "0", "class_type": "ImageInvert"}
    parts = [json.loads(data) for name, data in events if name == "image"]
    assert len(parts) > 1 and [p["index"] for p in parts] == list(range(len(parts)))
    assert base64.b64decode("".join(p["data"] for p in parts)) == inverted(png)
    result = json.loads(next(data for name, data in events if name == "result"))
    assert result["image_parts"] == len(parts) and result["width"] == 256
    # O injects its balance right before [DONE], which is the last line.
    assert events[-2] == ("message", '{"balance": 0.000}')
    assert events[-1] == ("message", "[DONE]")


async def test_sse_directly_ends_with_done(env: Env) -> None:
    async with env.http.post(
        env.url + "/comfystream-image",
        json=job_body(png_bytes(4, 4), progress=1),
        headers={"Accept": "text/event-stream"},
    ) as r:
        lines = await read_sse(r)
    assert lines[-2:] == [b"data: [DONE]\n", b"\n"]


async def test_worker_client_errors_keep_their_status(env: Env) -> None:
    async with env.http.post(
        env.url + "/comfystream-image",
        json=job_body(png_bytes(4, 4), status=400, error="unknown node Foo"),
    ) as r:
        assert r.status == 400
        assert await r.json() == {"error": "unknown node Foo", "status_code": 400}
    async with env.http.post(env.url + "/comfystream-image", json={"image": "not base64!"}) as r:
        assert r.status == 400
    async with env.http.post(env.url + "/comfystream-image", json=["not", "an", "object"]) as r:
        assert r.status == 400


async def test_sse_error_after_progress_is_an_error_event(env: Env) -> None:
    async with env.http.post(
        env.url + "/comfystream-image",
        json=job_body(png_bytes(4, 4), progress=2, status=400, error="node 3 failed"),
        headers={"Accept": "text/event-stream"},
    ) as r:
        assert r.status == 200
        events = events_of(await read_sse(r))
    assert [name for name, _ in events] == ["progress", "progress", "error", "message"]
    assert json.loads(events[2][1]) == {"error": "node 3 failed", "status_code": 400}
    assert events[-1][1] == "[DONE]"


async def test_sse_error_before_any_progress_is_a_plain_json_error(env: Env) -> None:
    async with env.http.post(
        env.url + "/comfystream-image",
        json=job_body(png_bytes(4, 4), progress=0, status=422, error="bad size"),
        headers={"Accept": "text/event-stream"},
    ) as r:
        assert r.status == 422 and r.content_type == "application/json"


async def test_timeout_is_504_json_and_frees_the_slot() -> None:
    async with running(workers={"infer": image_worker}, job_timeout_s=0.5) as env:
        await wait_until(lambda: env.runner.supervisor.is_ready("infer"), timeout=60)
        async with env.http.post(
            env.url + "/comfystream-image", json=job_body(png_bytes(4, 4), delay=3)
        ) as r:
            assert r.status == 504
            assert (await r.json())["status_code"] == 504
        assert env.runner.runtime.job_slots.in_flight == 0
        async with env.http.post(
            env.url + "/comfystream-image",
            json=job_body(png_bytes(4, 4), progress=1, delay=3),
            headers={"Accept": "text/event-stream"},
        ) as r:
            events = events_of(await read_sse(r))
        assert events[0][0] == "progress"
        assert json.loads(events[-2][1])["status_code"] == 504 and events[-1][1] == "[DONE]"


async def test_client_going_away_mid_sse_ends_the_job_for_us(env: Env) -> None:
    response = await env.http.post(
        env.url + "/comfystream-image",
        json=job_body(png_bytes(4, 4), progress=30, progress_delay=0.2),
        headers={"Accept": "text/event-stream"},
    )
    assert response.status == 200
    await response.content.readline()
    session_id = json.loads(response.headers["X-Metadata"])["session_id"]
    response.close()
    await wait_until(lambda: env.runner.runtime.job_slots.in_flight == 0, timeout=60)
    session = env.runner.runtime.sessions.get(session_id)
    assert session is not None and session.state is SessionState.FAILED


async def test_no_infer_worker_is_503() -> None:
    async with running(workers={}) as env:
        async with env.http.post(
            env.url + "/comfystream-image", json=job_body(png_bytes(4, 4))
        ) as r:
            assert r.status == 503
            assert "infer" in (await r.json())["error"]


async def test_a_worker_dying_mid_job_answers_503_at_once(env: Env) -> None:
    task = asyncio.create_task(
        env.http.post(env.url + "/comfystream-image", json=job_body(png_bytes(4, 4), delay=60))
    )
    await wait_until(lambda: env.runner.runtime.worker_jobs.in_flight() == 1)
    pid = env.runner.supervisor.workers["infer"].pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    async with await asyncio.wait_for(task, 60) as r:
        assert r.status == 503
    await wait_until(lambda: env.runner.supervisor.is_ready("infer"), timeout=60)
    async with env.http.post(env.url + "/comfystream-image", json=job_body(png_bytes(4, 4))) as r:
        assert r.status == 200  # the restarted worker takes jobs again
