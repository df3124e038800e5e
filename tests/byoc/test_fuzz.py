"""Property-based fuzzing of the runner's HTTP surface (one runner, real sockets): whatever the
``Livepeer`` header, job body or stream start body, the answer is a success or a 4xx JSON error,
never a 5xx, and ``/health`` stays healthy afterwards."""

from __future__ import annotations

import base64
import json
import string
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.byoc.harness import Env, running, wait_until
from tests.byoc.job_workers import image_worker

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=10).filter(lambda k: k != "test"), children, max_size=4)
    ),
    max_leaves=10,
)
header_text = st.text(alphabet=string.printable.strip() + " ", max_size=120)


def b64(obj: Any) -> str:
    return base64.b64encode(json.dumps(obj).encode()).decode()


header_objects = st.dictionaries(
    st.sampled_from(
        ["request", "parameters", "capability", "timeout_seconds", "id", "sig", "sender"]
    ),
    json_values | st.sampled_from(["{}", "text-reversal", "[]", ""]) | st.integers(-5, 100),
)
livepeer_headers = header_text | header_objects.map(b64)


async def check(response: aiohttp.ClientResponse) -> None:
    """A success, or a 4xx with the runner's JSON error body; never a 5xx."""
    assert response.status < 500, (response.status, await response.text())
    if response.status >= 400:
        body = await response.json()
        assert body["status_code"] == response.status and isinstance(body["error"], str)


@pytest.fixture
async def env() -> Env:  # type: ignore[misc]
    async with running(
        workers={"infer": image_worker}, capacity=1000, max_jobs=1000, job_timeout_s=20
    ) as env:
        await wait_until(lambda: env.runner.supervisor.is_ready("infer"), timeout=60)
        yield env
        async with env.http.get(env.url + "/health") as r:
            assert r.status == 200 and (await r.json())["status"] == "healthy"
        async with env.http.post(env.url + "/text-reversal", json={"text": "still fine"}) as r:
            assert r.status == 200


@FUZZ
@given(value=livepeer_headers, body=json_values)
async def test_fuzz_livepeer_header_and_text_reversal_body(env: Env, value: str, body: Any) -> None:
    async with env.http.post(
        env.url + "/process/request/text-reversal",
        data=json.dumps(body).encode(),
        headers={"Livepeer": value},
    ) as r:
        await check(r)
        if r.status == 200:
            data = await r.json()
            assert data["reversed"] == data["original"][::-1]


@FUZZ
@given(
    raw=st.binary(max_size=300),
    content_type=st.sampled_from(["", "application/json", "text/plain", "x/y"]),
)
async def test_fuzz_raw_job_bodies(env: Env, raw: bytes, content_type: str) -> None:
    for path in ("/text-reversal", "/comfystream-image"):
        async with env.http.post(
            env.url + path, data=raw, headers={"Content-Type": content_type}
        ) as r:
            await check(r)


@FUZZ
@given(
    body=st.dictionaries(
        st.sampled_from(["image", "workflow", "prompts", "accept", "x"]), json_values
    )
)
async def test_fuzz_image_job_bodies(env: Env, body: dict[str, Any]) -> None:
    async with env.http.post(env.url + "/process/request/comfystream-image", json=body) as r:
        await check(r)
        await r.read()


def url_values(env_base: str) -> st.SearchStrategy[Any]:
    return (
        st.sampled_from(
            [env_base + "nope-control", env_base + "nope-events", "http://127.0.0.1:9/x", "ftp://x"]
        )
        | json_values
    )


@FUZZ
@given(
    data=st.data(),
    stream_id=st.text(alphabet=string.ascii_letters + string.digits + "-_.:", max_size=40),
)
async def test_fuzz_stream_start_bodies(env: Env, data: st.DataObject, stream_id: str) -> None:
    """Mutations of a valid start body: overridden or missing keys, junk values, junk bytes."""
    assert env.orch is not None
    base = env.orch.trickle_base
    keys = [
        "gateway_request_id",
        "control_url",
        "events_url",
        "subscribe_url",
        "publish_url",
        "data_url",
        "params",
        "x",
    ]
    valid: dict[str, Any] = {
        "gateway_request_id": "fz",
        "control_url": base + "fz-control",
        "events_url": base + "fz-events",
        "params": None,
    }
    overrides = data.draw(st.dictionaries(st.sampled_from(keys), url_values(base), max_size=4))
    dropped = data.draw(st.lists(st.sampled_from(keys), max_size=2))
    body = {k: v for k, v in {**valid, **overrides}.items() if k not in dropped}
    headers = {"X-Stream-Id": stream_id} if stream_id else {}
    raw = (
        json.dumps(body).encode()
        if data.draw(st.sampled_from(["json", "json", "json", "bytes"])) == "json"
        else data.draw(st.binary(max_size=100))
    )
    async with env.http.post(env.url + "/stream/start", data=raw, headers=headers) as r:
        await check(r)
    async with env.http.post(env.url + "/stream/params", data=raw, headers=headers) as r:
        assert r.status < 500
    async with env.http.post(env.url + "/stream/stop", data=raw, headers=headers) as r:
        await check(r)
