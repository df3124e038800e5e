"""A Live Runner stream end to end: a client reserves an app session at the stand-in, starts the
stream through the session proxy, publishes a live clip on the input channel the runner created,
and reads inverted frames and status events; the client's stop ends it everywhere.

The input is our own encoder's (``LiveSource``); the media core's handling of other encoders is
covered by ``test_real_world_input.py`` and is the same whichever control plane started it."""

from __future__ import annotations

from byoc.sessions import SessionState
from tests.byoc.harness import wait_until
from tests.byoc.live_runner.helpers import ORCH_TIMING, call, client_stop, reserve, wait_registered
from tests.e2e.conftest import INVERT, SPEC, EventLog, LiveSource, OutputReader, live_runner


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
