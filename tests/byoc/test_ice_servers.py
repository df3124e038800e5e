"""ICE servers for peers: the configured list, and Twilio TURN credentials fetched from a local
fake of Twilio's token API (Twilio itself cannot be reached from the test machines; this fake is
the one stand-in for a remote service in the WebRTC tests)."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from byoc.ice_servers import IceServers, as_json, link_headers
from ipc.messages import IceServer
from tests.byoc.harness import fast_settings

SID, TOKEN = "AC0123", "auth-token"


@dataclass
class FakeTwilio:
    url: str = ""
    calls: list[str] = field(default_factory=list)
    status: int = 201
    ttl: str = "86400"


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    fake = FakeTwilio()

    async def tokens(request: web.Request) -> web.Response:
        fake.calls.append(request.headers.get("Authorization", ""))
        if fake.status >= 300:
            return web.json_response({"message": "nope"}, status=fake.status)
        return web.json_response(
            {
                "ttl": fake.ttl,
                "ice_servers": [
                    {
                        "url": "stun:global.stun.twilio.com:3478",
                        "urls": "stun:global.stun.twilio.com:3478",
                    },
                    {
                        "urls": "turn:global.turn.twilio.com:3478?transport=udp",
                        "username": "user-1",
                        "credential": "cred-1",
                    },
                ],
            },
            status=201,
        )

    app = web.Application()
    app.router.add_post(f"/2010-04-01/Accounts/{SID}/Tokens.json", tokens)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield fake
    await runner.cleanup()


CONFIGURED = ({"urls": ["stun:stun.example.org:3478"]},)


async def test_without_twilio_the_configured_servers_are_used() -> None:
    servers = await IceServers(fast_settings(ice_servers=CONFIGURED)).current()
    assert servers == [IceServer(urls=["stun:stun.example.org:3478"])]


async def test_twilio_credentials_are_fetched_once_and_cached(twilio: FakeTwilio) -> None:
    ice = IceServers(
        fast_settings(
            ice_servers=CONFIGURED,
            twilio_account_sid=SID,
            twilio_auth_token=TOKEN,
            twilio_url=twilio.url,
        )
    )
    first, second = await asyncio.gather(ice.current(), ice.current())
    assert first == second
    assert [s.urls[0] for s in first] == [
        "stun:stun.example.org:3478",
        "stun:global.stun.twilio.com:3478",
        "turn:global.turn.twilio.com:3478?transport=udp",
    ]
    assert first[2].username == "user-1" and first[2].credential == "cred-1"
    await ice.current()
    assert len(twilio.calls) == 1, "cached until the credentials expire"
    assert twilio.calls[0] == "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()


async def test_a_twilio_failure_is_logged_once_and_the_configured_list_used(
    twilio: FakeTwilio, caplog: pytest.LogCaptureFixture
) -> None:
    twilio.status = 401
    ice = IceServers(
        fast_settings(
            ice_servers=CONFIGURED,
            twilio_account_sid=SID,
            twilio_auth_token=TOKEN,
            twilio_url=twilio.url,
        )
    )
    caplog.set_level(logging.WARNING, logger="byoc.ice_servers")
    for _ in range(3):
        ice._expires_at = 0.0  # every session start asks again while it fails
        assert await ice.current() == [IceServer(urls=["stun:stun.example.org:3478"])]
    assert len(twilio.calls) == 3
    assert len([r for r in caplog.records if "Twilio" in r.getMessage()]) == 1
    twilio.status = 201
    ice._expires_at = 0.0
    assert len(await ice.current()) == 3


def test_link_headers_and_json_forms() -> None:
    servers = [
        IceServer(urls=["stun:s:3478"]),
        IceServer(urls=["turn:t:3478", "turns:t:5349"], username="u", credential="c"),
    ]
    assert link_headers(servers) == [
        '<stun:s:3478>; rel="ice-server"',
        '<turn:t:3478>; rel="ice-server"; username="u"; credential="c"; credential-type="password"',
        '<turns:t:5349>; rel="ice-server"; username="u"; credential="c"; credential-type="password"',
    ]
    assert as_json(servers) == [
        {"urls": ["stun:s:3478"]},
        {"urls": ["turn:t:3478", "turns:t:5349"], "username": "u", "credential": "c"},
    ]
