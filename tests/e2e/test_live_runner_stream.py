"""A Live Runner stream end to end: a client reserves an app session at the stand-in, starts the
stream through the session proxy, publishes a live clip on the input channel the runner created,
and reads inverted frames and status events; the client's stop ends it everywhere.

The input is our own encoder's (``LiveSource``); the media core's handling of other encoders is
covered by ``test_real_world_input.py`` and is the same whichever control plane started it."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from byoc.sessions import SessionState
from tests.byoc.harness import wait_until
from tests.byoc.live_runner.helpers import ORCH_TIMING, call, client_stop, reserve, wait_registered
from tests.byoc.webrtc_clients import Viewer, loopback_candidates, whep_view, whip_publish
from tests.e2e.conftest import INVERT, SPEC, EventLog, LiveSource, OutputReader, live_runner

WEBRTC = {"webrtc_host_addresses": ("127.0.0.1",), "webrtc_idle_timeout_s": 3.0}


async def test_live_runner_stream_is_inverted_reports_events_and_stops() -> None:
    async with live_runner(live_runner=True, orch_options=ORCH_TIMING) as env:
        assert env.orch is not None
        runner_id = await wait_registered(env)
        session = await reserve(env.http, env.orch.url, runner_id)
        status, body = await call(
            env.http,
            session,
            "POST",
            "start",
            json={"workflow": INVERT, "width": SPEC.width, "height": SPEC.height},
        )
        assert status == 200, body
        channels = body["channels"]
        events = EventLog(channels["events"])
        reader = OutputReader(channels["output"]).start()
        source = LiveSource(channels["input"], audio=False)
        source.start()
        try:
            await reader.wait_for(lambda r: len(r.counters()) >= 15, timeout=60)
            await events.until(lambda e: e["state"] == "processing", timeout=60)
        finally:
            await source.stop()
        try:
            assert all(f.inverted for f in reader.frames)
            assert env.runner.runtime.sessions.get(session.session_id) is not None
            assert await client_stop(env.http, session) == 204
            stream = env.runner.runtime.sessions.get(session.session_id)
            assert stream is not None
            await wait_until(lambda: stream.state is SessionState.STOPPED, timeout=60)
            await reader.wait_for(lambda r: r.ended, timeout=60)  # channels closed on release
        finally:
            await reader.close()
            await events.close()
        assert stream.control_plane == "live-runner"


async def test_live_runner_whip_in_whep_out_through_the_proxy() -> None:
    with loopback_candidates():
        async with live_runner(live_runner=True, orch_options=ORCH_TIMING, **WEBRTC) as env:
            assert env.orch is not None
            runner_id = await wait_registered(env)
            session = await reserve(env.http, env.orch.url, runner_id)
            status, body = await call(
                env.http,
                session,
                "POST",
                "start",
                json={"input": "whip", "workflow": INVERT, "width": 256, "height": 256},
            )
            assert status == 200, body
            assert body["whip_url"] == "whip" and "input" not in body["channels"]
            publisher = await whip_publish(env.http, f"{session.app_url}/{body['whip_url']}")
            viewer: Viewer | None = None
            try:
                assert publisher.location == "whip"  # relative: under the client's app URL

                async def attempt() -> bool:
                    nonlocal viewer
                    result = await whep_view(
                        env.http, f"{session.app_url}/whep", expect=409, audio=False
                    )
                    if isinstance(result, Viewer):
                        viewer = result
                        return True
                    return False

                await wait_until(attempt, timeout=60, interval=0.2)
                assert viewer is not None
                assert viewer.location.startswith("whep/")
                received = viewer.received
                await wait_until(lambda: sum(c is not None for c in received.counters) >= 15, 60)
                assert all(
                    inverted
                    for counter, inverted in zip(received.counters, received.inverted, strict=True)
                    if counter is not None
                )
            finally:
                if viewer is not None:
                    await viewer.close()
                await publisher.pc.close()
            assert await client_stop(env.http, session) == 204
            stream = env.runner.runtime.sessions.get(session.session_id)
            assert stream is not None
            await wait_until(lambda: not stream.live, timeout=60)


async def test_live_runner_image_job_through_the_proxy() -> None:
    """The one-shot image job of the app API: an image inverted by the real infer worker comes
    back through the session proxy; a body that is no image is a 400 with a JSON error, and the
    session stays usable."""
    async with live_runner(live_runner=True, orch_options=ORCH_TIMING) as env:
        assert env.orch is not None
        runner_id = await wait_registered(env)
        session = await reserve(env.http, env.orch.url, runner_id)
        pixels = np.zeros((8, 16, 3), np.uint8)
        pixels[:, :, 0] = np.arange(16, dtype=np.uint8) * 16
        pixels[:, :, 1] = 200
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        body = {"image": base64.b64encode(buffer.getvalue()).decode(), "workflow": INVERT}

        status, bad = await call(env.http, session, "POST", "image", json={"workflow": INVERT})
        assert status == 400, bad
        assert bad["status_code"] == 400 and bad["error"]

        status, answer = await call(env.http, session, "POST", "image", json=body)
        assert status == 200, answer
        assert (answer["width"], answer["height"]) == (16, 8)
        out = Image.open(io.BytesIO(base64.b64decode(answer["image"]))).convert("RGB")
        inverted = 255 - pixels.astype(int)
        assert np.abs(np.asarray(out).astype(int) - inverted).max() <= 1
        assert await client_stop(env.http, session) == 204
