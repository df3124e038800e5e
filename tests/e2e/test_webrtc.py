"""WebRTC end to end: aiortc peers in the test process, the runner with its real workers, all on
loopback. WHIP in -> invert workflow -> WHEP out; DELETE frees everything."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from aiortc import RTCSessionDescription

from byoc.livepeer.trickle.constants import CONTENT_TYPE_MPEGTS
from byoc.livepeer.webrtc.sdp import ice_credentials
from byoc.sessions import SessionState
from byoc.supervisor import default_workers
from byoc.worker_media_path import WorkerMediaPath
from tests.byoc.harness import Env, running, wait_until
from tests.byoc.webrtc_clients import (
    Viewer,
    loopback_candidates,
    publisher_offer,
    viewer_offer,
    whep_view,
    whip_publish,
)
from tests.e2e import held_infer
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
    pids = {name: env.runner.supervisor.workers[name].process for name in ("ingest", "egress")}
    sockets_before = {name: sockets_of(p.pid) for name, p in pids.items() if p and p.pid}
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
    for name, process in pids.items():  # every peer connection's UDP port closed
        assert process is not None and process.pid is not None
        await wait_until(lambda p=process, n=name: sockets_of(p.pid) <= sockets_before[n], 30)


async def test_a_trickle_stream_is_watched_over_whep(env: Env) -> None:
    """A stream go-livepeer started, watched by two viewers at once; one leaves, the other and
    the stream go on."""
    urls = await start_stream(env, "tw1", {"workflow": INVERT})
    assert urls is not None
    source = LiveSource(urls.publish)
    source.start()
    viewers: list[Viewer] = []
    try:
        viewers.append(await watch(env, "tw1", codec="video/VP8"))
        viewers.append(await watch(env, "tw1"))
        first, second = (v.received for v in viewers)
        assert first.codec == "VP8", "VP8 when the viewer asks for it"
        assert second.codec == "H264", "H.264 otherwise"
        for received in (first, second):
            await wait_until(lambda r=received: sum(c is not None for c in r.counters) >= 30, 90)
            read = [c for c in received.counters if c is not None]
            flags = [
                inv
                for c, inv in zip(received.counters, received.inverted, strict=True)
                if c is not None
            ]
            assert True in flags, (received.codec, "no inverted frame")
            assert all(flags), (received.codec, flags)
            assert read == sorted(read), (received.codec, read)
            # Both codecs come from the shared encoders at --whep-bitrate: VP8 no longer starts
            # at aiortc's low bitrate with noise reduction, which blurred the counter's cells.
            assert received.audio_frames > 0, "the trickle input's audio reaches the viewer"
        # The first viewer leaves; the stream and the second viewer go on.
        async with env.http.delete(f"{env.url}{viewers[0].location}") as response:
            assert response.status == 200
        assert state_of(env, "tw1") is SessionState.PROCESSING
        seen = len(second.counters)
        await wait_until(lambda: len(second.counters) >= seen + 30, 60)
        async with env.http.delete(f"{env.url}{viewers[0].location}") as response:
            assert response.status == 404
    finally:
        for viewer in viewers:
            await viewer.close()
        await source.stop()


async def test_the_viewers_of_a_session_share_one_encode(env: Env) -> None:
    """Two H.264 viewers: one encoder in the egress worker, one encode per picture (its own
    figures, reported in the session's status); the last viewer leaving stops it."""
    publisher = await whip_publish(env.http, whip_url(env, INVERT))
    session_id = publisher.location.rsplit("/", 1)[1]
    status_url = f"{env.url}/byoc/session/{session_id}/status"
    viewers: list[Viewer] = []

    async def encoders() -> dict[str, int]:
        async with env.http.get(status_url) as response:
            body = await response.json()
        return dict(body.get("figures", {}).get("encoders", {}))

    try:
        await wait_until(lambda: state_of(env, session_id) is SessionState.PROCESSING, 60)
        viewers = [await watch(env, session_id), await watch(env, session_id)]
        for viewer in viewers:
            received = viewer.received
            await wait_until(lambda r=received: sum(c is not None for c in r.counters) >= 30, 90)
            read = [c for c in received.counters if c is not None]
            assert read == sorted(read) and len(set(read)) == len(read)

        async def shared() -> dict[str, int] | None:
            figures = await encoders()
            return figures if figures.get("viewers") == 2 and figures["pictures"] >= 30 else None

        figures = await wait_until(shared, 60, interval=0.2)
        assert figures["encoders"] == 1 and figures["encoders_opened"] == 1
        # One encode per picture for both viewers, not one per viewer (the encode thread may be
        # one picture ahead of the count of pictures when the figures are read).
        assert figures["pictures"] <= figures["frames_encoded"] <= figures["pictures"] + 1
        for viewer in viewers:
            async with env.http.delete(f"{env.url}{viewer.location}") as response:
                assert response.status == 200

        async def stopped() -> bool:
            figures = await encoders()
            return figures.get("viewers") == 0 and figures.get("encoders") == 0

        await wait_until(stopped, 60, interval=0.2)
    finally:
        for viewer in viewers:
            await viewer.close()
        async with env.http.delete(f"{env.url}{publisher.location}") as response:
            assert response.status == 200
        await publisher.pc.close()
    await wait_until(lambda: not rings_of(session_id), timeout=30)


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


def sockets_of(pid: int) -> int:
    """Open sockets of a process (its peer connections' UDP ports among them)."""
    fds = f"/proc/{pid}/fd"
    count = 0
    for fd in os.listdir(fds):
        with contextlib.suppress(OSError):
            count += os.readlink(f"{fds}/{fd}").startswith("socket:")
    return count


def fragment(ufrag: str, pwd: str, port: int = 9) -> str:
    return (
        f"a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n"
        f"a=candidate:1 1 udp 2130706431 127.0.0.1 {port} typ host\r\na=end-of-candidates\r\n"
    )


async def test_patch_then_a_silent_peer_ends_after_the_idle_timeout(env: Env) -> None:
    ingest = env.runner.supervisor.workers["ingest"].process
    assert ingest is not None and ingest.pid is not None
    sockets_before = sockets_of(ingest.pid)
    publisher = await whip_publish(env.http, whip_url(env, INVERT))
    session_id = publisher.location.rsplit("/", 1)[1]
    url = f"{env.url}{publisher.location}"
    ufrag, pwd = ice_credentials(publisher.pc.localDescription.sdp)
    try:
        sdpfrag = {"Content-Type": "application/trickle-ice-sdpfrag"}
        async with env.http.patch(url, data="a=x", headers={"Content-Type": "text/plain"}) as r:
            assert r.status == 415
        async with env.http.patch(url, data=fragment(ufrag, pwd), headers=sdpfrag) as r:
            assert r.status == 204, await r.text()
            assert "ETag" not in r.headers
        stale = {**sdpfrag, "If-Match": '"stale"'}
        async with env.http.patch(url, data=fragment(ufrag, pwd), headers=stale) as r:
            assert r.status == 412
        async with env.http.patch(
            url, data=fragment("newufrag", "newpassword"), headers=sdpfrag
        ) as r:
            body = await r.json()
            assert r.status == 422 and body["status_code"] == 422, body
        async with env.http.patch(url, data="garbage", headers=sdpfrag) as r:
            assert r.status == 400
        await wait_until(lambda: state_of(env, session_id) is SessionState.PROCESSING, 60)
        # The peer goes silent without a DELETE: the idle timeout (3 s here) ends the session.
        publisher.video.flowing.clear()
        assert publisher.audio is not None
        publisher.audio.flowing.clear()
        await wait_until(lambda: state_of(env, session_id) is SessionState.COMPLETED, 30)
        await wait_until(lambda: not rings_of(session_id), 30)
        async with env.http.patch(url, data=fragment(ufrag, pwd), headers=sdpfrag) as r:
            assert r.status == 404, "PATCH on a finished session"
        async with env.http.delete(url) as r:
            assert r.status == 404
        await wait_until(lambda: sockets_of(ingest.pid) <= sockets_before, 30)
    finally:
        await publisher.pc.close()


async def test_bad_input_auth_cors_and_capacity() -> None:
    token = {"Authorization": "Bearer secret-token"}
    sdp_type = {"Content-Type": "application/sdp", **token}
    with loopback_candidates():
        async with live_runner(capacity=1, token="secret-token", **WEBRTC) as env:
            async with env.http.options(f"{env.url}/whip") as r:  # preflight: no token
                assert r.status == 204
                exposed = r.headers["Access-Control-Expose-Headers"]
                assert all(h in exposed for h in ("Location", "ETag", "Link"))
            pc, _, _ = await publisher_offer()
            offer = pc.localDescription.sdp
            three, _, _ = await publisher_offer(videos=3)
            try:
                async with env.http.post(
                    f"{env.url}/whip", data=offer, headers={"Content-Type": "application/sdp"}
                ) as r:
                    assert r.status == 401
                async with env.http.post(
                    f"{env.url}/byoc/whep/any",
                    data=offer,
                    headers={"Content-Type": "application/sdp"},
                ) as r:
                    assert r.status == 401, "a paid stream is not public"
                cases = [
                    ("/whip", offer, {"Content-Type": "text/plain", **token}, 415),
                    ("/whip", "hello", sdp_type, 400),
                    ("/whip", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n", sdp_type, 400),
                    ("/whip", three.localDescription.sdp, sdp_type, 422),
                    ("/whip?width=abc&height=5", offer, sdp_type, 400),
                    ("/byoc/whip/unknown", offer, sdp_type, 404),
                    ("/byoc/whep/unknown", offer, sdp_type, 404),
                    ("/byoc/whep/unknown", offer, {"Content-Type": "text/plain", **token}, 415),
                ]
                for path, body, headers, status in cases:
                    async with env.http.post(f"{env.url}{path}", data=body, headers=headers) as r:
                        answer = await r.json()
                        assert r.status == status, (path, answer)
                        assert answer["status_code"] == status and answer["error"]
                async with env.http.delete(f"{env.url}/byoc/whep/unknown/x", headers=token) as r:
                    assert r.status == 404
                assert env.runner.runtime.sessions.live_count() == 0, "nothing was admitted"

                # 200 concurrent offers with room for one: one 201, the rest 503 + Retry-After.
                async def post() -> tuple[int, str, str]:
                    async with env.http.post(f"{env.url}/whip", data=offer, headers=sdp_type) as r:
                        return r.status, r.headers.get("Retry-After", ""), await r.text()

                results = await asyncio.gather(*(post() for _ in range(200)))
                created = [body for status, _, body in results if status == 201]
                refused = [(s, retry) for s, retry, _ in results if s != 201]
                assert len(created) == 1
                assert all(s == 503 and retry for s, retry in refused), refused[:3]
                await pc.setRemoteDescription(RTCSessionDescription(created[0], "answer"))
                (session_id,) = [s.id for s in env.runner.runtime.sessions if s.state.live]
                async with env.http.delete(f"{env.url}/byoc/whip/{session_id}", headers=token) as r:
                    assert r.status == 200
                assert env.runner.runtime.sessions.live_count() == 0
                await wait_until(lambda: not rings_of(session_id), 30)
                peers = env.runner.runtime.peers
                assert peers is not None and not peers.peers

                # A workflow infer refuses: the offer is answered at once (no warm-up waited
                # for), then the session fails with the reason and frees its slot.
                bad = {"1": {"class_type": "NoSuchNode", "inputs": {}}}
                again, _, _ = await publisher_offer()
                try:
                    url = whip_url(env, bad)
                    sdp = again.localDescription.sdp
                    async with env.http.post(url, data=sdp, headers=sdp_type) as r:
                        text = await r.text()
                        # Answered before infer refused the workflow (201), or after (400).
                        assert r.status in (201, 400), text
                        if r.status == 400:
                            assert "NoSuchNode" in text
                    failed = [s for s in env.runner.runtime.sessions if s.id != session_id]
                    assert len(failed) == 1
                    failed_id = failed[0].id
                    await wait_until(lambda: state_of(env, failed_id) is SessionState.FAILED, 60)
                    status = await (
                        await env.http.get(
                            f"{env.url}/byoc/session/{failed_id}/status", headers=token
                        )
                    ).json()
                    assert status["status"] == "failed" and "NoSuchNode" in status["error"]
                    await wait_until(lambda: not rings_of(failed_id), 30)
                    assert env.runner.runtime.sessions.live_count() == 0
                finally:
                    await again.close()
            finally:
                await pc.close()
                await three.close()


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None,
    reason="needs root, unshare and ip for a network namespace",
)
def test_runner_in_a_loopback_only_namespace_needs_no_patch() -> None:
    """The runner started in a network namespace whose only interface is loopback serves a
    client in the same namespace: 127.0.0.1 is offered without any patch in the runner."""
    script = "ip link set lo up && exec python -m tests.e2e.netns_webrtc"
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["unshare", "-n", "sh", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    assert "frames received over WHEP" in done.stdout


async def test_the_answer_does_not_wait_for_the_workflow_warm_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Warm-up held on an event: the WHIP 201 still comes, frames wait in the input ring (newest
    win, drops counted), a WHEP viewer's offer is answered at once (its handshake overlaps the
    warm-up) and params wait until it is live; then that viewer gets processed frames."""
    gate = tmp_path / "warmed-up"
    monkeypatch.setenv(held_infer.GATE_ENV, str(gate))
    workers = {**default_workers(), "infer": held_infer.main}
    with loopback_candidates():
        async with running(
            workers=workers,
            media_factory=WorkerMediaPath,
            engine="builtin",
            worker_start_timeout_s=120.0,
            **WEBRTC,
        ) as env:
            assert await env.runner.supervisor.wait_ready(120)
            publisher = await whip_publish(env.http, whip_url(env, INVERT))
            session_id = publisher.location.rsplit("/", 1)[1]
            viewer: Viewer | None = None
            try:
                assert state_of(env, session_id) in (
                    SessionState.CONNECTED,
                    SessionState.PROCESSING,
                )
                pipeline = env.runner.media
                assert isinstance(pipeline, WorkerMediaPath)
                in_ring = pipeline.streams[session_id].rings[0]
                await wait_until(lambda: in_ring.stats().dropped > 0, 60)  # waiting, counted
                early = await whep_view(env.http, f"{env.url}/byoc/whep/{session_id}")
                assert isinstance(early, Viewer), "answered while infer still warms up"
                viewer = early
                assert not gate.exists()  # infer's warm-up cannot have ended
                # Params sent before infer holds the stream wait for it (they used to answer
                # "infer: no such stream").
                update = asyncio.create_task(
                    env.http.post(
                        f"{env.url}/byoc/session/{session_id}/params",
                        json={"workflow": INVERT},
                    )
                )
                await asyncio.sleep(0)
                assert not update.done()
                assert not early.received.counters, "no frame before the warm-up ended"
                gate.touch()
                async with await update as response:
                    assert response.status == 200, await response.text()
                received = early.received
                await wait_until(lambda: sum(c is not None for c in received.counters) >= 10, 60)
                assert all(
                    inv
                    for c, inv in zip(received.counters, received.inverted, strict=True)
                    if c is not None
                )
                assert state_of(env, session_id) is SessionState.PROCESSING
            finally:
                if viewer is not None:
                    await viewer.close()
                await publisher.pc.close()


async def test_a_viewer_attached_during_a_failing_warm_up_ends_with_the_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A workflow that validates but fails on its warm-up frame, with a WHEP viewer answered
    while the warm-up was held: the session fails with the workflow's error, the viewer is
    forgotten and the rings are gone."""
    gate = tmp_path / "warmed-up"
    monkeypatch.setenv(held_infer.GATE_ENV, str(gate))
    workers = {**default_workers(), "infer": held_infer.main}
    fails_on_frames = {
        "1": {"class_type": "LoadTensor", "inputs": {}},
        "2": {"class_type": "ImageToMask", "inputs": {"image": ["1", 0], "channel": "alpha"}},
        "3": {"class_type": "MaskToImage", "inputs": {"mask": ["2", 0]}},
        "4": {"class_type": "SaveTensor", "inputs": {"images": ["3", 0]}},
    }
    with loopback_candidates():
        async with running(
            workers=workers,
            media_factory=WorkerMediaPath,
            engine="builtin",
            worker_start_timeout_s=120.0,
            **WEBRTC,
        ) as env:
            assert await env.runner.supervisor.wait_ready(120)
            publisher = await whip_publish(env.http, whip_url(env, fails_on_frames))
            session_id = publisher.location.rsplit("/", 1)[1]
            viewer: Viewer | None = None
            try:
                early = await whep_view(env.http, f"{env.url}/byoc/whep/{session_id}")
                assert isinstance(early, Viewer)
                viewer = early
                gate.touch()
                await wait_until(lambda: state_of(env, session_id) is SessionState.FAILED, 60)
                async with env.http.get(f"{env.url}/byoc/session/{session_id}/status") as r:
                    status = await r.json()
                assert status["status"] == "failed", status
                assert "the workflow failed on a" in status["error"], status
                peers = env.runner.runtime.peers
                assert peers is not None
                await wait_until(lambda: not peers.peers, 30)
                await wait_until(lambda: not rings_of(session_id), 30)
                refused = await whep_view(env.http, f"{env.url}/byoc/whep/{session_id}", expect=404)
                assert not isinstance(refused, Viewer)
            finally:
                if viewer is not None:
                    await viewer.close()
                await publisher.pc.close()


def beep_onsets(audio: list[Any], rate: int = 48_000) -> list[int]:
    """The pts (90 kHz) where a beep starts: sound after at least 0.3 s of silence."""
    onsets, quiet_since = [], None
    window = rate // 200  # 5 ms
    for chunk in audio:
        raw = chunk.frame.to_ndarray()
        scale = 32768.0 if raw.dtype == np.int16 else 1.0
        samples = np.abs(raw.astype(np.float32) / scale).reshape(-1)
        if chunk.channels > 1:
            samples = samples[:: chunk.channels]
        for start in range(0, samples.size - window + 1, window):
            pts = chunk.pts + start * 90_000 // chunk.sample_rate
            loud = float(samples[start : start + window].mean()) > 0.02
            if not loud:
                quiet_since = pts if quiet_since is None else quiet_since
            elif quiet_since is not None and pts - quiet_since >= 27_000:
                onsets.append(pts)
                quiet_since = None
            else:
                quiet_since = None
    return onsets


async def test_whip_audio_and_video_stay_in_sync_on_the_trickle_output(env: Env) -> None:
    """A beep at every whole second of the publisher's clock, drawn with the frame counter on the
    same clock: in the output, each beep starts where the frame of that second is."""
    assert env.orch is not None
    env.orch.trickle.create_channel("sync-out", CONTENT_TYPE_MPEGTS)
    publish_url = f"{env.orch.trickle_base}sync-out"
    pc, _, _ = await publisher_offer(beeps=True)
    reader: OutputReader | None = None
    try:
        response = await env.job(
            "whip-ingest", {"sdp_offer": pc.localDescription.sdp, "publish_url": publish_url}
        )
        body = await response.json()
        assert response.status == 200, body
        await pc.setRemoteDescription(RTCSessionDescription(body["result"]["sdp_answer"], "answer"))
        reader = OutputReader(publish_url, start_seq=-1).start()
        await reader.wait_for(lambda r: max(r.counters(), default=0) >= 9 * 30, timeout=120)
        frames = [(f.counter, f.pts) for f in reader.frames if f.counter is not None]
        # Sender reports come within the first seconds; judge the beeps after them.
        onsets = [p for p in beep_onsets(reader.audio) if p > frames[0][1] + 3 * 90_000]
        assert len(onsets) >= 2, (len(reader.audio), beep_onsets(reader.audio))
        for onset in onsets:
            counter, pts = min(frames, key=lambda f: abs(f[1] - onset))
            at_onset = counter + (onset - pts) / 3_000  # the clip's frame index at the beep
            second = round(at_onset / 30)
            error_s = (at_onset - second * 30) / 30
            assert abs(error_s) < 0.1, (onset, counter, pts, error_s)
    finally:
        await pc.close()
        if reader is not None:
            await reader.close()


async def test_a_killed_ingest_worker_fails_its_whip_sessions_at_once(env: Env) -> None:
    """A WHIP peer connection dies with its worker and cannot be resumed: the session fails as
    soon as the worker is back (not after the offer wait), and frees everything."""
    publisher = await whip_publish(env.http, whip_url(env))
    session_id = publisher.location.rsplit("/", 1)[1]
    try:
        await wait_until(lambda: state_of(env, session_id) is SessionState.PROCESSING, 60)
        ingest = env.runner.supervisor.workers["ingest"].process
        assert ingest is not None and ingest.pid is not None
        os.kill(ingest.pid, signal.SIGKILL)
        await wait_until(lambda: state_of(env, session_id) is SessionState.FAILED, 30)
        session = env.runner.runtime.sessions.get(session_id)
        assert session is not None and "ingest worker restarted" in (session.error or "")
        await wait_until(lambda: not rings_of(session_id), 30)
        peers = env.runner.runtime.peers
        assert peers is not None and not peers.peers
    finally:
        await publisher.pc.close()


async def test_comfystream_video_whip_and_whep_endpoints_work_as_advertised(env: Env) -> None:
    response = await env.job(
        "comfystream-video", {"input": {"workflow": INVERT, "width": 256, "height": 256}}
    )
    body = await response.json()
    assert response.status == 200, body
    session_id = body["session_id"]
    result = body["result"]
    publisher = await whip_publish(env.http, f"{env.url}{result['whip_endpoint']}")
    viewer: Viewer | None = None
    try:
        assert publisher.location == result["whip_endpoint"]
        second = await whep_view(
            env.http, f"{env.url}{result['whip_endpoint']}", expect=422
        )  # a WHEP-shaped (recvonly) offer is not a publisher's
        assert not isinstance(second, Viewer)
        await wait_until(lambda: state_of(env, session_id) is SessionState.PROCESSING, 60)
        viewer = await watch(env, session_id)
        assert viewer.location.startswith(result["whep_endpoint"] + "/")
        received = viewer.received
        await wait_until(lambda: sum(c is not None for c in received.counters) >= 15, 60)
        assert all(
            inv
            for c, inv in zip(received.counters, received.inverted, strict=True)
            if c is not None
        )
        again = await whip_publish_status(env, result["whip_endpoint"])
        assert again == 409, "one publisher per session"
    finally:
        if viewer is not None:
            await viewer.close()
        await publisher.pc.close()
        async with env.http.delete(f"{env.url}/byoc/session/{session_id}") as r:
            assert r.status == 200
    await wait_until(lambda: not rings_of(session_id), 30)


async def whip_publish_status(env: Env, path: str) -> int:
    pc, _, _ = await publisher_offer()
    try:
        async with env.http.post(
            f"{env.url}{path}",
            data=pc.localDescription.sdp,
            headers={"Content-Type": "application/sdp"},
        ) as r:
            return r.status
    finally:
        await pc.close()
