"""``GET /byoc/session/{id}/status`` carries a live stream's figures (what the page shows as the
runner's own latency), and only while the stream is live."""

from __future__ import annotations

from byoc.sessions import SessionState
from ipc.messages import StageLatency, StreamStats
from tests.byoc.harness import running, wait_until
from tests.byoc.stream_helpers import start_via_orch


async def test_status_shows_the_live_streams_figures() -> None:
    async with running() as env:
        async with await start_via_orch(env, "fig", {"params": {"width": 16, "height": 16}}) as r:
            assert r.status == 200
        sessions = env.runner.runtime.sessions
        await wait_until(lambda: sessions.get("fig").state is SessionState.READY)  # type: ignore[union-attr]
        controller = env.runner.runtime.streams.get("fig")
        assert controller is not None
        controller.on_stats(
            StreamStats(
                stream_id="fig",
                worker="egress",
                fps_out=29.5,
                dropped={"late": 3},
                stages={"end_to_end": StageLatency(p50=41.0, p95=50.0, p99=60.0, count=90)},
            )
        )
        async with env.http.get(env.url + "/byoc/session/fig/status") as r:
            body = await r.json()
        assert body["status"] == "ready"
        stream = body["figures"]
        assert stream["fps_out"] == 29.5 and stream["frames_dropped"] == 3
        assert stream["latency_ms"] == 41.0
        assert stream["stages"]["end_to_end"] == {
            "p50": 41.0,
            "p95": 50.0,
            "p99": 60.0,
            "count": 90,
        }

        await controller.end(SessionState.STOPPED, "test")
        async with env.http.get(env.url + "/byoc/session/fig/status") as r:
            body = await r.json()
        assert body["status"] == "stopped" and "figures" not in body
