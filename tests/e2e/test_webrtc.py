"""WebRTC end to end: aiortc peers in the test process, the runner with its real workers, all on
loopback. WHIP in -> invert workflow -> WHEP out; DELETE frees everything."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest

from byoc.sessions import SessionState
from tests.byoc.harness import Env, wait_until
from tests.byoc.webrtc_clients import Viewer, loopback_candidates, whep_view, whip_publish
from tests.e2e.conftest import INVERT, live_runner

WEBRTC = {"webrtc_host_addresses": ("127.0.0.1",), "webrtc_idle_timeout_s": 3.0}


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    with loopback_candidates():
        async with live_runner(**WEBRTC) as env:
            yield env


def state_of(env: Env, session_id: str) -> SessionState | None:
    session = env.runner.runtime.sessions.get(session_id)
    return session.state if session is not None else None


def rings_of(session_id: str) -> list[str]:
    prefix = f"cbyoc-{os.getpid()}-{session_id}"
    return [name for name in os.listdir("/dev/shm") if name.startswith(prefix)]


def whip_url(env: Env, workflow: dict[str, Any] | None = None, **query: Any) -> str:
    parts = [f"{k}={v}" for k, v in query.items()]
    if workflow is not None:
        parts.append("workflow=" + quote(json.dumps(workflow)))
    return f"{env.url}/whip" + ("?" + "&".join(parts) if parts else "")


async def watch(env: Env, session_id: str, **kwargs: Any) -> Viewer:
    """A WHEP viewer, retried while the session answers 409 (not live yet)."""
    viewer: Viewer | None = None

    async def attempt() -> bool:
        nonlocal viewer
        result = await whep_view(
            env.http, f"{env.url}/byoc/whep/{session_id}", expect=409, **kwargs
        )
        if isinstance(result, Viewer):
            viewer = result
            return True
        assert result.headers.get("Retry-After")
        return False

    await wait_until(attempt, timeout=60, interval=0.2)
    assert viewer is not None
    return viewer


async def test_whip_invert_whep_frames_in_order_with_audio(env: Env) -> None:
    publisher = await whip_publish(env.http, whip_url(env, INVERT))
    session_id = publisher.location.rsplit("/", 1)[1]
    viewer: Viewer | None = None
    try:
        assert publisher.location == f"/byoc/whip/{session_id}"
        assert publisher.etag.startswith('"') and publisher.etag.endswith('"')
        assert "a=candidate:" in publisher.answer
        await wait_until(lambda: state_of(env, session_id) is SessionState.PROCESSING, 60)
        viewer = await watch(env, session_id)
        assert viewer.received.codec == "H264", "H.264 comes first for viewers"
        received = viewer.received
        await wait_until(
            lambda: (
                sum(c is not None for c in received.counters) >= 45 and received.audio_frames >= 50
            ),
            timeout=90,
        )
        read = [
            (c, inv)
            for c, inv in zip(received.counters, received.inverted, strict=True)
            if c is not None
        ]
        assert all(inv for _, inv in read), "every picture went through the invert workflow"
        counters = [c for c, _ in read]
        assert counters == sorted(counters), "frames arrive in order"
        assert len(set(counters)) == len(counters)
        assert max(received.audio_levels[-20:]) > 0.01, "the tone is heard"
        stats = await (await env.http.get(f"{env.url}/byoc/session/{session_id}/status")).json()
        assert stats["status"] == "processing" and stats["capability"] == "whip-ingest"
    finally:
        if viewer is not None:
            await viewer.close()
        async with env.http.delete(f"{env.url}{publisher.location}") as response:
            assert response.status == 200, await response.text()
        await publisher.pc.close()
    assert state_of(env, session_id) is SessionState.COMPLETED
    await wait_until(lambda: not rings_of(session_id), timeout=30)
    peers = env.runner.runtime.peers
    assert peers is not None and not peers.peers
