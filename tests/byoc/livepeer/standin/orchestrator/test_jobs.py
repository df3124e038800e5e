"""The stand-in's job proxy against a scripted worker: exactly what go-livepeer's orchestrator
sends and how it treats each kind of answer (byoc-protocol.md sections 1.4-1.5)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from byoc.livepeer.header import encode_header
from byoc.livepeer.standin.orchestrator import LocalOrchestrator
from byoc.livepeer.standin.orchestrator.jobs import worker_url
from byoc.livepeer.standin.orchestrator.registry import ExternalCapability
from tests.byoc.livepeer.standin.orchestrator.capture import CaptureWorker, delayed, fixed, sse


@pytest.fixture
async def setup() -> AsyncIterator[tuple[LocalOrchestrator, CaptureWorker, aiohttp.ClientSession]]:
    worker = CaptureWorker()
    await worker.start()
    orch = LocalOrchestrator()
    await orch.start()
    http = aiohttp.ClientSession()
    try:
        yield orch, worker, http
    finally:
        await http.close()
        await orch.close()
        await worker.close()


def register(
    orch: LocalOrchestrator, url: str, name: str = "cap", token: str = ""
) -> ExternalCapability:
    capability = ExternalCapability(name=name, url=url, capacity=4, token=token)
    orch.registry.capabilities[name] = capability
    return capability


def header(capability: str = "cap", timeout: int = 5) -> dict[str, str]:
    return {"Livepeer": encode_header(capability=capability, timeout_seconds=timeout)}


@pytest.mark.parametrize(
    ("url", "path", "expected"),
    [
        ("http://w:5000", "/process/request/reverse-text", "http://w:5000/reverse-text"),
        ("http://w:5000", "/process/request/a/b", "http://w:5000/a/b"),
        ("http://w:5000/api", "/process/request/a/b", "http://w:5000/api/a/b"),
        ("http://w:5000", "/process/request/", "http://w:5000"),
        ("http://w:5000/", "/process/request/reverse-text", "http://w:5000//reverse-text"),
    ],
)
def test_path_joining_is_go_livepeers(url: str, path: str, expected: str) -> None:
    assert worker_url(url, path) == expected


async def test_only_the_listed_headers_reach_the_worker(setup) -> None:  # type: ignore[no-untyped-def]
    orch, worker, http = setup
    register(orch, worker.url, token="tkn")
    async with http.post(
        f"{orch.url}/process/request/x/y?q=1",
        data=b'{"text":"a"}',
        headers={
            **header(),
            "Content-Type": "application/json",
            "Authorization": "client-secret",
            "X-Stream-Id": "s",
            "X-Custom": "1",
            "Livepeer-Payment": "abc",
        },
    ) as r:
        assert r.status == 200
    seen = worker.seen[-1]
    assert (seen.method, seen.path, seen.query, seen.body) == ("POST", "/x/y", "", b'{"text":"a"}')
    names = {name.lower() for name in seen.headers}
    assert "livepeer" not in names and "x-stream-id" not in names and "x-custom" not in names
    assert "livepeer-payment" not in names
    assert seen.headers["Authorization"] == "Bearer tkn"
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["Content-Length"] == "12"
    assert seen.headers["User-Agent"] == "Go-http-client/1.1"


async def test_absent_content_type_is_forwarded_empty(setup) -> None:  # type: ignore[no-untyped-def]
    orch, worker, http = setup
    register(orch, worker.url)
    async with http.post(
        f"{orch.url}/process/request/x",
        data=b"{}",
        headers=header(),
        skip_auto_headers=["Content-Type"],
    ) as r:
        assert r.status == 200
    assert worker.seen[-1].headers.get("Content-Type") == ""


@pytest.mark.parametrize(
    ("bad", "status"),
    [
        (None, 400),
        ("!!!", 400),
        (encode_header(capability="cap", timeout_seconds=0), 400),
        (encode_header(capability="cap", timeout_seconds=5, request="[]"), 400),
        (encode_header(capability="cap", timeout_seconds=5, sig="0x"), 400),
        (encode_header(capability="unknown", timeout_seconds=5), 503),
    ],
)
async def test_header_is_required_and_checked(setup, bad: str | None, status: int) -> None:  # type: ignore[no-untyped-def]
    orch, worker, http = setup
    register(orch, worker.url)
    headers = {"Livepeer": bad} if bad is not None else {}
    async with http.post(f"{orch.url}/process/request/x", data=b"{}", headers=headers) as r:
        assert r.status == status
        assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert worker.seen == []


async def test_a_long_0x_signature_and_an_empty_one_are_accepted_offchain(setup) -> None:  # type: ignore[no-untyped-def]
    orch, worker, http = setup
    register(orch, worker.url)
    for sig in ("", "0x" + "ab" * 65):
        value = encode_header(capability="cap", timeout_seconds=5, sig=sig)
        async with http.post(
            f"{orch.url}/process/request/x", data=b"{}", headers={"Livepeer": value}
        ) as r:
            assert r.status == 200


async def test_non_sse_success_becomes_200_with_two_headers_copied(setup) -> None:  # type: ignore[no-untyped-def]
    orch, worker, http = setup
    register(orch, worker.url)
    worker.replies["/x"] = fixed(
        201, b'{"made":1}', "application/json", **{"X-Metadata": "m", "X-Other": "o"}
    )
    async with http.post(f"{orch.url}/process/request/x", data=b"{}", headers=header()) as r:
        assert r.status == 200
        assert await r.read() == b'{"made":1}'
        assert r.headers["Content-Type"].startswith("application/json")
        assert r.headers["X-Metadata"] == "m"
        assert "X-Other" not in r.headers
        assert r.headers["Livepeer-Balance"] == "0"
    assert orch.registry.capabilities["cap"].load == 0  # released


async def test_worker_errors_are_relayed_as_plain_text(setup) -> None:  # type: ignore[no-untyped-def]
    orch, worker, http = setup
    register(orch, worker.url)
    worker.replies["/x"] = fixed(422, b'{"error":"bad"}', "application/json")
    async with http.post(f"{orch.url}/process/request/x", data=b"{}", headers=header()) as r:
        assert r.status == 422
        assert await r.read() == b'{"error":"bad"}\n'
        assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert "cap" in orch.registry.capabilities


async def test_401_from_the_worker_removes_the_capability(setup) -> None:  # type: ignore[no-untyped-def]
    orch, worker, http = setup
    register(orch, worker.url)
    worker.replies["/x"] = fixed(401, b"no")
    async with http.post(f"{orch.url}/process/request/x", data=b"{}", headers=header()) as r:
        assert r.status == 500
        assert "worker auth token failed" in await r.text()
    assert "cap" not in orch.registry.capabilities


async def test_unreachable_worker_removes_the_capability(setup) -> None:  # type: ignore[no-untyped-def]
    orch, _, http = setup
    register(orch, "http://127.0.0.1:9")  # discard port: connection refused
    async with http.post(f"{orch.url}/process/request/x", data=b"{}", headers=header()) as r:
        assert r.status == 500
        assert "removing capability" in await r.text()
    assert "cap" not in orch.registry.capabilities


async def test_timeout_keeps_the_capability_and_leaks_the_slot(setup) -> None:  # type: ignore[no-untyped-def]
    orch, worker, http = setup
    capability = register(orch, worker.url)
    worker.replies["/x"] = delayed(3, fixed(200, b"late"))
    async with http.post(
        f"{orch.url}/process/request/x", data=b"{}", headers=header(timeout=1)
    ) as r:
        assert r.status == 500
        assert "context deadline exceeded" in await r.text()
    assert orch.registry.get("cap") is capability
    assert capability.load == 1  # as in go-livepeer: not released on this path


async def test_sse_is_relayed_line_by_line_with_the_balance_before_done(setup) -> None:  # type: ignore[no-untyped-def]
    orch, worker, http = setup
    register(orch, worker.url)
    worker.replies["/x"] = sse(
        [
            b"event: progress\r\n",
            b'data: {"n":1}\r\n\r\n',
            b"data: par",
            b"tial line\n\n",
            b"data: [DONE]\n\n",
            b"data: after\n\n",
        ],
        status=201,
        pause=0.01,
    )
    async with http.post(f"{orch.url}/process/request/x", data=b"{}", headers=header()) as r:
        assert r.status == 200  # the worker's status is ignored for SSE
        assert r.headers["Content-Type"] == "text/event-stream"
        assert r.headers["Livepeer-Payment-Balance"] == "0"
        text = await r.read()
    assert text == (
        b'event: progress\ndata: {"n":1}\n\ndata: partial line\n\n'
        b'data: {"balance": 0.000}\n\ndata: [DONE]\n'
    )


async def test_a_64_kib_sse_line_silently_ends_the_relay(setup) -> None:  # type: ignore[no-untyped-def]
    orch, worker, http = setup
    register(orch, worker.url)
    long_line = b"data: " + base64.b64encode(b"x" * 60_000) + b"\n\n"
    worker.replies["/x"] = sse([b"data: first\n\n", long_line, b"data: [DONE]\n\n"])
    async with http.post(
        f"{orch.url}/process/request/x", data=b"{}", headers=header(timeout=1)
    ) as r:
        text = await r.read()
    assert text.startswith(b"data: first\n\n")
    assert b"[DONE]" not in text and b"xxxx" not in text


async def test_sse_without_done_spins_empty_lines_until_the_timeout(setup) -> None:  # type: ignore[no-untyped-def]
    orch, worker, http = setup
    register(orch, worker.url)
    worker.replies["/x"] = sse([b"data: one\n\n"])
    async with http.post(
        f"{orch.url}/process/request/x", data=b"{}", headers=header(timeout=1)
    ) as r:
        text = await r.read()
    assert text.startswith(b"data: one\n\n")
    assert text[len(b"data: one\n\n") :].strip(b"\n") == b""
    assert len(text) > len(b"data: one\n\n") + 2  # the empty lines go-livepeer writes


async def test_wrong_method_is_405(setup) -> None:  # type: ignore[no-untyped-def]
    orch, _, http = setup
    async with http.get(f"{orch.url}/process/request/x", headers=header()) as r:
        assert r.status == 405
    async with http.get(f"{orch.url}/nothing") as r:
        assert r.status == 404 and await r.text() == "404 page not found\n"


def test_header_helper_produces_standard_base64_json() -> None:
    decoded = json.loads(base64.b64decode(header()["Livepeer"]))
    assert decoded["capability"] == "cap" and decoded["request"] == "{}"
