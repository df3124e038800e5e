"""WebRTC end to end: aiortc peers in the test process, the runner with its real workers, all on
loopback. WHIP in -> invert workflow -> WHEP out; DELETE frees everything."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest
from aiortc import RTCSessionDescription

from byoc.livepeer.trickle.constants import CONTENT_TYPE_MPEGTS
from byoc.sessions import SessionState
from tests.byoc.harness import Env, wait_until
from tests.byoc.webrtc_clients import (
    Viewer,
    loopback_candidates,
    publisher_offer,
    viewer_offer,
    whep_view,
    whip_publish,
)
from tests.e2e.conftest import (
    INVERT,
    PASSTHROUGH,
    LiveSource,
    OutputReader,
    live_runner,
    start_stream,
)

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


async def test_a_trickle_stream_is_watched_over_whep(env: Env) -> None:
    urls = await start_stream(env, "tw1", {"workflow": INVERT})
    assert urls is not None
    source = LiveSource(urls.publish)
    source.start()
    viewer = None
    try:
        viewer = await watch(env, "tw1", codec="video/VP8")
        assert viewer.received.codec == "VP8", "VP8 when the viewer asks for it"
        received = viewer.received
        await wait_until(lambda: sum(c is not None for c in received.counters) >= 30, 90)
        read = [c for c in received.counters if c is not None]
        assert all(
            inv
            for c, inv in zip(received.counters, received.inverted, strict=True)
            if c is not None
        )
        assert read == sorted(read)
        assert received.audio_frames > 0, "the trickle input's audio reaches the viewer"
        # The viewer leaves; the stream goes on.
        async with env.http.delete(f"{env.url}{viewer.location}") as response:
            assert response.status == 200
        assert state_of(env, "tw1") is SessionState.PROCESSING
        async with env.http.delete(f"{env.url}{viewer.location}") as response:
            assert response.status == 404
    finally:
        if viewer is not None:
            await viewer.close()
        await source.stop()


async def test_whip_ingest_capability_trickle_out_whep_subscribe_and_params(env: Env) -> None:
    """The capability routes in their JSON shapes, through the orchestrator stand-in: WHIP in,
    trickle out and a WHEP viewer at once; a live workflow swap; DELETE ends it."""
    assert env.orch is not None
    env.orch.trickle.create_channel("whip-out", CONTENT_TYPE_MPEGTS)  # as a gateway would
    publish_url = f"{env.orch.trickle_base}whip-out"
    pc, _, _ = await publisher_offer()
    reader: OutputReader | None = None
    viewer_pc = None
    try:
        response = await env.job(
            "whip-ingest",
            {"sdp_offer": pc.localDescription.sdp, "workflow": INVERT, "publish_url": publish_url},
        )
        body = await response.json()
        assert response.status == 200, body
        session_id = body["session_id"]
        assert body["status"] == "connected"
        result = body["result"]
        assert set(result) >= {"sdp_answer", "session_id", "ice_servers"}
        assert result["session_id"] == session_id and isinstance(result["ice_servers"], list)
        await pc.setRemoteDescription(RTCSessionDescription(result["sdp_answer"], "answer"))
        reader = OutputReader(publish_url, start_seq=-1).start()
        await wait_until(lambda: state_of(env, session_id) is SessionState.PROCESSING, 60)
        stats = await (await env.http.get(f"{env.url}/byoc-stats")).json()
        assert stats[session_id]["status"] == "processing"
        await reader.wait_for(lambda r: len(r.counters()) >= 20, timeout=60)
        assert all(f.inverted for f in reader.frames if f.counter is not None)

        # whep-subscribe: session_id required (400), unknown ids 404 without naming others.
        viewer_pc, received, tasks = await viewer_offer()
        sdp = viewer_pc.localDescription.sdp
        response = await env.job("whep-subscribe", {"sdp_offer": sdp})
        assert response.status == 400
        response = await env.job("whep-subscribe", {"sdp_offer": sdp, "session_id": "nope"})
        assert response.status == 404
        assert session_id not in await response.text()
        response = await env.job("whep-subscribe", {"sdp_offer": sdp, "session_id": session_id})
        body = await response.json()
        assert response.status == 200, body
        assert body["status"] == "connected" and body["session_id"] == session_id
        assert set(body["result"]) >= {"sdp_answer", "session_id", "ice_servers"}
        await viewer_pc.setRemoteDescription(
            RTCSessionDescription(body["result"]["sdp_answer"], "answer")
        )
        await wait_until(lambda: sum(c is not None for c in received.counters) >= 15, 60)
        assert all(received.inverted[i] for i, c in enumerate(received.counters) if c is not None)

        # A live workflow swap between two frames: passthrough from now on.
        async with env.http.post(
            f"{env.url}/byoc/session/{session_id}/params", json={"workflow": PASSTHROUGH}
        ) as r:
            assert r.status == 200, await r.text()
        seen = len(received.counters)
        await wait_until(
            lambda: (
                sum(
                    c is not None and not inv
                    for c, inv in zip(
                        received.counters[seen:], received.inverted[seen:], strict=False
                    )
                )
                >= 10
            ),
            60,
        )
        async with env.http.post(
            f"{env.url}/byoc/session/{session_id}/params", json={"width": 64}
        ) as r:
            assert r.status == 400
        async with env.http.delete(f"{env.url}/byoc/whip/{session_id}") as r:
            assert r.status == 200
        assert state_of(env, session_id) is SessionState.COMPLETED
        status = await (await env.http.get(f"{env.url}/byoc/session/{session_id}/status")).json()
        assert status["status"] == "completed"
        await wait_until(lambda: not rings_of(session_id), timeout=30)
        for task in tasks:
            task.cancel()
    finally:
        await pc.close()
        if viewer_pc is not None:
            await viewer_pc.close()
        if reader is not None:
            await reader.close()
