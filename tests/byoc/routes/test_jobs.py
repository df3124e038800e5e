"""Job routes through the local orchestrator stand-in (real sockets), cases J1-J9 of the BYOC
conformance list, the runner API's ``Livepeer`` header checks, and 1,000 concurrent jobs."""

from __future__ import annotations

import asyncio
import base64
import json

import aiohttp
import pytest

from byoc.livepeer.header import encode_header
from tests.byoc.harness import Env, running, wait_until
from tests.byoc.job_workers import image_worker


def tiny_png() -> str:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 3), (10, 20, 30)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


async def assert_json_error(response: aiohttp.ClientResponse, status: int) -> dict[str, object]:
    assert response.status == status
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["status_code"] == status and isinstance(body["error"], str) and body["error"]
    return dict(body)


@pytest.fixture
async def env() -> Env:  # type: ignore[misc]
    async with running() as env:
        yield env


async def test_j1_text_reversal_through_the_orchestrator(env: Env) -> None:
    async with await env.job("text-reversal", {"text": "abc"}) as r:
        assert r.status == 200
        assert r.content_type == "application/json"
        assert await r.json() == {"original": "abc", "reversed": "cba"}
        session_id = json.loads(r.headers["X-Metadata"])["session_id"]  # J5: relayed by O
        assert r.headers["Livepeer-Balance"] == "0"
    async with env.http.get(f"{env.url}/byoc/session/{session_id}/status") as r:
        status = await r.json()
    assert status["status"] == "completed"
    assert status["result"] == {"original": "abc", "reversed": "cba"}


async def test_j1_the_route_name_the_orchestrator_calls_and_the_runner_api_route(env: Env) -> None:
    for path in ("/text-reversal", "/process/request/text-reversal"):
        async with env.http.post(env.url + path, json={"text": "héllo"}) as r:
            assert r.status == 200
            assert await r.json() == {"original": "héllo", "reversed": "olléh"}


async def test_j2_empty_or_absent_content_type_does_not_matter(env: Env) -> None:
    header = encode_header(capability="text-reversal", timeout_seconds=5)
    # Through O with no Content-Type: O forwards an empty one.
    async with env.http.post(
        f"{env.orch_url}/process/request/text-reversal",
        data=b'{"text": "ab"}',
        headers={"Livepeer": header},
        skip_auto_headers=["Content-Type"],
    ) as r:
        assert r.status == 200 and (await r.json())["reversed"] == "ba"
    async with env.http.post(
        f"{env.url}/text-reversal", data=b'{"text": "ab"}', headers={"Content-Type": ""}
    ) as r:
        assert r.status == 200
    async with env.http.post(
        f"{env.url}/text-reversal", data=b"not json", skip_auto_headers=["Content-Type"]
    ) as r:
        await assert_json_error(r, 400)


@pytest.mark.parametrize("body", [{}, {"text": 5}, {"text": None}, {"text": ["a"]}, [1], "x"])
async def test_j6_invalid_text_reversal_input_is_400(env: Env, body: object) -> None:
    async with env.http.post(f"{env.url}/text-reversal", json=body) as r:
        await assert_json_error(r, 400)
    async with await env.job("text-reversal", body) as r:
        assert r.status == 400  # relayed by O (as its plain-text error)
        assert "status_code" in await r.text()


async def test_j3_empty_and_nested_routes_and_query_strings(env: Env) -> None:
    async with env.http.post(env.url + "/", json={"text": "a"}) as r:
        await assert_json_error(r, 404)
    async with env.http.post(env.url + "/a/b", json={"text": "a"}) as r:
        await assert_json_error(r, 404)
    # /process/request/ -> O calls the bare registered URL: our 404, relayed.
    async with await env.job("", {"text": "a"}, capability="text-reversal") as r:
        assert r.status == 404
    async with await env.job("text-reversal/extra", {"text": "a"}, capability="text-reversal") as r:
        assert r.status == 404
    # O drops query strings; the job still maps to the capability.
    header = encode_header(capability="text-reversal", timeout_seconds=5)
    async with env.http.post(
        f"{env.orch_url}/process/request/text-reversal?debug=1",
        json={"text": "q"},
        headers={"Livepeer": header},
    ) as r:
        assert r.status == 200


async def test_unknown_capability_wrong_method_and_unknown_route_are_json(env: Env) -> None:
    async with env.http.post(env.url + "/process/request/teleport", json={}) as r:
        await assert_json_error(r, 404)
    async with env.http.get(env.url + "/text-reversal") as r:
        await assert_json_error(r, 405)
    async with env.http.put(env.url + "/health") as r:
        await assert_json_error(r, 405)
    async with env.http.get(env.url + "/nothing/here") as r:
        await assert_json_error(r, 404)


async def test_oversized_body_is_413_json() -> None:
    async with running(max_body_bytes=4096) as env:
        async with env.http.post(env.url + "/text-reversal", json={"text": "x" * 5000}) as r:
            await assert_json_error(r, 413)
        async with env.http.post(env.url + "/stream/start", data=b"{" + b" " * 5000 + b"}") as r:
            await assert_json_error(r, 413)


async def test_only_implemented_capabilities_are_registered(env: Env) -> None:
    assert env.orch is not None
    assert set(env.orch.registry.capabilities) == {
        "text-reversal",
        "comfystream-image",
        "comfystream-video",
        "whip-ingest",
        "whep-subscribe",
    }


@pytest.mark.parametrize(
    ("header", "needle"),
    [
        ("***", "base64"),
        (base64.b64encode(b"{oops").decode(), "JSON"),
        (
            encode_header(capability="text-reversal", timeout_seconds=5, request="not json"),
            "request",
        ),
        (
            encode_header(capability="text-reversal", timeout_seconds=5, parameters="nope"),
            "parameters",
        ),
        (encode_header(capability="text-reversal", timeout_seconds=0), "timeout_seconds"),
        (encode_header(capability="text-reversal", timeout_seconds=-1), "timeout_seconds"),
        (encode_header(capability="comfystream-image", timeout_seconds=5), "does not match"),
        # These escaped as RecursionError / OverflowError into a 500 (1,500 levels are past
        # the parser's recursion limit and still inside aiohttp's 8 KiB header limit).
        (base64.b64encode(b"[" * 1500 + b"]" * 1500).decode(), "nested deeper"),
        (
            encode_header(
                capability="text-reversal", timeout_seconds=5, request="[" * 1500 + "]" * 1500
            ),
            "request is nested deeper",
        ),
        (
            encode_header(
                capability="text-reversal", timeout_seconds=5, parameters="[" * 1500 + "]" * 1500
            ),
            "parameters is nested deeper",
        ),
        (encode_header(capability="text-reversal", timeout_seconds=10**400), "too many digits"),
        (encode_header(capability="text-reversal", timeout_seconds=10**15), "timeout_seconds"),
    ],
)
async def test_runner_api_livepeer_header_is_checked(env: Env, header: str, needle: str) -> None:
    async with env.http.post(
        env.url + "/process/request/text-reversal", json={"text": "a"}, headers={"Livepeer": header}
    ) as r:
        body = await assert_json_error(r, 400)
        assert needle in str(body["error"])


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 5000 + b"]" * 5000,
        b'{"text": ' + b"[" * 3000 + b"]" * 3000 + b"}",
        b'{"text": "a", "n": 1e400}',
        b'{"text": "a", "n": NaN}',
        b'{"text": "a", "n": ' + b"9" * 500 + b"}",
    ],
)
async def test_job_bodies_too_deep_or_out_of_range_are_400(env: Env, body: bytes) -> None:
    for path in ("/process/request/text-reversal", "/text-reversal", "/comfystream-image"):
        async with env.http.post(env.url + path, data=body) as r:
            await assert_json_error(r, 400)
    async with await env.job("text-reversal", body) as r:  # relayed by the orchestrator
        assert r.status == 400


async def test_runner_api_accepts_a_good_header_and_no_header(env: Env) -> None:
    header = encode_header(capability="text-reversal", timeout_seconds=5)
    async with env.http.post(
        env.url + "/process/request/text-reversal",
        json={"text": "ok"},
        headers={"Livepeer": header},
    ) as r:
        assert r.status == 200


async def test_j9_unknown_headers_are_ignored(env: Env) -> None:
    async with env.http.post(
        env.url + "/text-reversal",
        json={"text": "z"},
        headers={"X-Stream-Id": "nope", "X-Anything": "1", "Livepeer-Payment": "abc"},
    ) as r:
        assert r.status == 200


async def test_j4_bearer_token_required_when_configured() -> None:
    async with running(token="s3cret-token") as env:
        assert env.orch is not None
        registered = env.orch.registry.capabilities["text-reversal"]
        assert registered.token == "s3cret-token"  # R7: the token went with the registration
        async with await env.job("text-reversal", {"text": "abc"}) as r:
            assert r.status == 200  # O sends the Bearer token
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}):
            async with env.http.post(
                env.url + "/text-reversal", json={"text": "a"}, headers=headers
            ) as r:
                await assert_json_error(r, 401)
            async with env.http.post(env.url + "/stream/stop", data=b"", headers=headers) as r:
                await assert_json_error(r, 401)
        async with env.http.get(env.url + "/health") as r:
            assert r.status == 200  # liveness stays open


async def test_j4_a_401_evicts_us_at_the_orchestrator_and_we_register_again_at_once() -> None:
    async with running(token="new-token", register_interval_s=3600) as env:
        assert env.orch is not None
        env.orch.registry.capabilities["text-reversal"].token = "old-token"
        async with await env.job("text-reversal", {"text": "abc"}) as r:
            assert r.status == 500  # O: worker auth token failed, capability removed
            assert "removing capability" in await r.text()
        await wait_until(lambda: env.orch.registry.get("text-reversal") is not None, timeout=60)
        assert env.orch.registry.capabilities["text-reversal"].token == "new-token"
        async with await env.job("text-reversal", {"text": "abc"}) as r:
            assert r.status == 200


async def test_thousand_concurrent_jobs_through_the_orchestrator(env: Env) -> None:
    async def one(i: int) -> tuple[int, object]:
        async with await env.job("text-reversal", {"text": f"job-{i}"}) as r:
            return r.status, await r.json()

    results = await asyncio.gather(*(one(i) for i in range(1000)))
    assert all(status == 200 for status, _ in results)
    assert all(
        body == {"original": f"job-{i}", "reversed": f"job-{i}"[::-1]}
        for i, (_, body) in enumerate(results)
    )
    assert env.runner.runtime.job_slots.in_flight == 0


async def test_j6_j7_busy_runner_answers_503_and_a_slow_worker_times_out_at_the_orchestrator() -> (
    None
):
    async with running(workers={"infer": image_worker}, max_jobs=1, job_timeout_s=30) as env:
        await wait_until(lambda: env.runner.supervisor.is_ready("infer"), timeout=60)
        slow = asyncio.create_task(
            env.job("comfystream-image", {"image": tiny_png(), "test": {"delay": 3}}, timeout=1)
        )
        await wait_until(lambda: env.runner.runtime.job_slots.in_flight == 1)
        async with await env.job("text-reversal", {"text": "x"}) as r:
            assert r.status == 503  # J6: over our own limit; the gateway retries elsewhere
            assert "capacity" in await r.text()
        async with await slow as r:
            assert r.status == 500  # J7: O gave up waiting for headers after timeout_seconds
            assert "context deadline exceeded" in await r.text()
        await wait_until(lambda: env.runner.runtime.job_slots.in_flight == 0, timeout=60)
