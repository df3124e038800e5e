"""Property-based fuzzing of the runner's parsers (one runner, real sockets): whatever the
``Livepeer`` header, job body, stream start/params/stop body or control-channel message, the
answer is a success or a 4xx JSON error, never a 5xx; no worker restarts, live streams keep
applying control messages, and ``/health`` stays healthy afterwards.

Example counts come from the hypothesis profile (tests/conftest.py): modest under ``make test``,
10,000 a property under ``make test-stress``."""

from __future__ import annotations

import base64
import json
import os
import string
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.byoc.harness import Env, running, wait_until
from tests.byoc.job_workers import image_worker

# 10,000 examples a property under the stress profile take far longer than the suite's
# per-test hang guard on a loaded 2-core machine (about 200 s a property measured here).
pytestmark = pytest.mark.timeout(3600 if os.environ.get("BYOC_STRESS") == "1" else 300)

FUZZ = settings(
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


def _nested(depth: int, opener: str) -> str:
    closer = {"[": "]", "{": "}", '{"a":': "}"}[opener]
    inner = "0" if opener == '{"a":' else ""
    return opener * depth + inner + closer * depth


# What json.loads cannot be trusted with: nesting past its recursion limit, numbers that
# overflow a float (or are not numbers), and plain garbage; valid JSON too.
hostile_json = st.one_of(
    st.builds(_nested, st.integers(1, 3000), st.sampled_from(["[", '{"a":'])),
    st.builds(lambda n: "1" + "0" * n, st.integers(300, 5000)),
    st.builds(
        lambda n, sign: f"{sign}1e{n}", st.integers(300, 100_000), st.sampled_from(["", "-"])
    ),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "[NaN]", '{"x": Infinity}', "\ud800"]),
    st.builds(
        lambda key, value: json.dumps({key: "PLACEHOLDER"}).replace('"PLACEHOLDER"', value),
        st.sampled_from(["params", "width", "timeout_seconds", "prompts", "text", "x"]),
        st.sampled_from(["1e400", "9" * 500, "[" * 2000 + "]" * 2000, "NaN", "-1e999"]),
    ),
    json_values.map(json.dumps),
    st.text(max_size=50),
)

header_objects = st.dictionaries(
    st.sampled_from(
        ["request", "parameters", "capability", "timeout_seconds", "id", "sig", "sender"]
    ),
    json_values | st.sampled_from(["{}", "text-reversal", "[]", ""]) | st.integers(-5, 100),
)
hostile_header_objects = st.fixed_dictionaries(
    {
        "request": hostile_json.filter(lambda t: len(t) < 1500) | st.just("{}"),
        "capability": st.just("text-reversal"),
        "timeout_seconds": st.integers() | st.sampled_from([10**400, 2**64, -(2**70), 0]),
    },
    optional={"parameters": hostile_json.filter(lambda t: len(t) < 1500)},
)


def raw_b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8", "surrogatepass")).decode()


livepeer_headers = (
    header_text
    | header_objects.map(b64)
    | hostile_header_objects.map(b64)
    | hostile_json.filter(lambda t: len(t) < 2000).map(raw_b64)
)


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
        assert all(w.restarts == 0 for w in env.runner.supervisor.workers.values())
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


JSON_ROUTES = (
    "/process/request/text-reversal",
    "/text-reversal",
    "/comfystream-image",
    "/process/request/comfystream-image",
    "/process/request/comfystream-video",
    "/stream/start",
    "/stream/params",
    "/stream/stop",
)


@FUZZ
@given(body=hostile_json, route=st.sampled_from(JSON_ROUTES))
async def test_fuzz_hostile_json_on_every_json_route(env: Env, body: str, route: str) -> None:
    """Deep JSON escaped the parsers as RecursionError, huge numbers as OverflowError: 500s."""
    async with env.http.post(
        env.url + route,
        data=body.encode("utf-8", "surrogatepass"),
        headers={"X-Stream-Id": "fuzz-params"},
    ) as r:
        await check(r)


@pytest.fixture
async def live_stream(env: Env) -> str:
    """A stream through the stand-in, live for the whole test; returns its control URL."""
    assert env.orch is not None
    from tests.byoc.stream_helpers import start_via_orch

    async with await start_via_orch(env, "fuzz-control") as r:
        assert r.status == 200
        control_url = r.headers["X-Control-Url"]
    await wait_until(lambda: env.runner.runtime.streams.get("fuzz-control") is not None)
    return control_url


@FUZZ
@given(message=hostile_json | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
async def test_fuzz_control_channel_messages(env: Env, live_stream: str, message: str) -> None:
    """A bad control message is skipped; the stream and its control loop live on."""
    from byoc.livepeer.trickle import TricklePublisher

    async with TricklePublisher(
        live_stream, "application/json", start_seq=None, verify_tls=False, delete_on_close=False
    ) as pub:
        async with pub.segment() as seg:
            await seg.write(message.encode("utf-8", "surrogatepass"))
        assert await seg.wait()
    controller = env.runner.runtime.streams.get("fuzz-control")
    assert controller is not None and controller.tasks_alive() and not controller.ended


async def test_control_messages_still_apply_after_hostile_ones(env: Env, live_stream: str) -> None:
    from byoc.livepeer.trickle import TricklePublisher
    from tests.byoc.stream_helpers import publish_control

    async with TricklePublisher(
        live_stream, "application/json", start_seq=None, verify_tls=False, delete_on_close=False
    ) as pub:
        for junk in (b"[" * 5000, b"1e400", b"NaN", b"\xff\xfe", b'{"width": 1e400}'):
            async with pub.segment() as seg:
                await seg.write(junk)
            assert await seg.wait()
    await publish_control(live_stream, {"width": 64, "height": 32})
    await wait_until(
        lambda: (
            (c := env.runner.runtime.streams.get("fuzz-control")) is not None
            and c.session.params.get("width") == 64
        )
    )
