"""The stand-in's ``/capability/register`` and ``/unregister`` with go-livepeer's semantics."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from byoc.livepeer.standin.orchestrator import LocalOrchestrator

GOOD = {
    "name": "text-reversal",
    "description": "d",
    "url": "http://w:1",
    "capacity": 2,
    "price_per_unit": 0,
    "price_scaling": 1,
    "currency": "wei",
}


@pytest.fixture
async def orch() -> AsyncIterator[LocalOrchestrator]:
    orch = LocalOrchestrator(secret="sec")
    await orch.start()
    try:
        yield orch
    finally:
        await orch.close()


async def post(
    orch: LocalOrchestrator, path: str, body: bytes, secret: str | None = "sec"
) -> tuple[int, str, bytes]:
    headers = {"Authorization": secret} if secret is not None else {}
    async with (
        aiohttp.ClientSession() as http,
        http.post(orch.url + path, data=body, headers=headers) as r,
    ):
        return r.status, r.headers.get("Content-Type", ""), await r.read()


async def test_register_answers_ok_that_is_not_json(orch: LocalOrchestrator) -> None:
    status, content_type, body = await post(orch, "/capability/register", json.dumps(GOOD).encode())
    assert (status, content_type, body) == (200, "application/json", b"ok")
    assert orch.registry.capabilities["text-reversal"].capacity == 2


@pytest.mark.parametrize("secret", [None, "", "Bearer sec", "SEC"])
async def test_wrong_secret_is_400_invalid_authorization(
    orch: LocalOrchestrator, secret: str | None
) -> None:
    status, _, body = await post(orch, "/capability/register", json.dumps(GOOD).encode(), secret)
    assert (status, body) == (400, b"invalid authorization\n")
    assert not orch.registry.capabilities


@pytest.mark.parametrize(
    "change",
    [
        {"capacity": "1"},
        {"capacity": 0.5},
        {"price_per_unit": True},
        {"name": 5},
        {"price_scaling": 2**64},
    ],
)
async def test_strict_types(orch: LocalOrchestrator, change: dict[str, object]) -> None:
    status, _, body = await post(
        orch, "/capability/register", json.dumps({**GOOD, **change}).encode()
    )
    assert status == 400 and body.startswith(b"Error registering capability: ")


async def test_reregistering_replaces_and_resets_the_load(orch: LocalOrchestrator) -> None:
    await post(orch, "/capability/register", json.dumps(GOOD).encode())
    orch.registry.capabilities["text-reversal"].load = 3
    await post(
        orch,
        "/capability/register",
        json.dumps({**GOOD, "capacity": 9, "price_scaling": 0}).encode(),
    )
    capability = orch.registry.capabilities["text-reversal"]
    assert (capability.load, capability.capacity, capability.price_scaling) == (0, 9, 1)


async def test_unknown_keys_ignored_and_an_open_orchestrator_takes_anyone() -> None:
    orch = LocalOrchestrator(secret="")
    await orch.start()
    try:
        status, _, _ = await post(
            orch, "/capability/register", json.dumps({**GOOD, "new": 1}).encode(), None
        )
        assert status == 200
    finally:
        await orch.close()


async def test_unsupported_currency_drops_the_connection(orch: LocalOrchestrator) -> None:
    with pytest.raises(aiohttp.ClientError):
        await post(orch, "/capability/register", json.dumps({**GOOD, "currency": "USD"}).encode())
    assert not orch.registry.capabilities


async def test_unregister_takes_the_plain_name_and_always_answers_ok(
    orch: LocalOrchestrator,
) -> None:
    await post(orch, "/capability/register", json.dumps(GOOD).encode())
    assert await post(orch, "/capability/unregister", b"text-reversal") == (
        200,
        "application/json",
        b"ok",
    )
    assert not orch.registry.capabilities
    assert (await post(orch, "/capability/unregister", b"never-there"))[0] == 200
    assert (await post(orch, "/capability/unregister", b"x", "bad"))[0] == 400


async def test_methods_other_than_post_are_405(orch: LocalOrchestrator) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("/capability/register", "/capability/unregister"):
            async with http.get(orch.url + path) as r:
                assert r.status == 405
