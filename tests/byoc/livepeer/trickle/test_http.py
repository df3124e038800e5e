"""Client plumbing: TLS argument and session ownership."""

from __future__ import annotations

import ssl

import aiohttp
import pytest

from byoc.livepeer.trickle.http import SessionHolder, request_ssl, streaming_timeout


def test_request_ssl():
    assert request_ssl(True) is True
    assert request_ssl(False) is False
    ctx = ssl.create_default_context()
    assert request_ssl(False, ctx) is ctx


def test_streaming_timeout_bounds_only_connecting():
    timeout = streaming_timeout(3.0)
    assert timeout.total is None and timeout.sock_read is None
    assert timeout.connect == 3.0 and timeout.sock_connect == 3.0


async def test_own_session_is_opened_lazily_and_closed():
    holder = SessionHolder(None)
    session = holder.get()
    assert holder.get() is session and not session.closed
    await holder.close()
    assert session.closed
    with pytest.raises(aiohttp.ClientConnectionError):
        holder.get()


async def test_shared_session_is_not_closed():
    async with aiohttp.ClientSession() as shared:
        holder = SessionHolder(shared)
        assert holder.get() is shared
        await holder.close()
        assert not shared.closed
