"""``/metrics`` during a real live stream (the three real workers, a real trickle input): with
the input paused, so the figures stand still, the stream's series agree with its status; once
the stream stops, they are gone. Every page is parsed with ``prometheus_client.parser``."""

from __future__ import annotations

import itertools

from tests.byoc.harness import Env, wait_until
from tests.byoc.stream_helpers import stop_via_orch
from tests.byoc.test_metrics import Samples, scrape, stream_ids, value
from tests.e2e.conftest import INVERT, LiveSource, OutputReader, start_stream

FRAMES = 45
LOST_EXCLUDED = ("scaled", "mp4_scaled", "workflow_error")


def frames_out(samples: Samples, stream_id: str) -> float:
    found = value(
        samples, "byoc_stream_frames_total", stream_id=stream_id, worker="egress", direction="out"
    )
    return found or 0.0


async def test_a_paused_stream_s_series_match_its_status_and_vanish_when_it_stops(
    env: Env,
) -> None:
    stream_id = "metrics-live"
    urls = await start_stream(env, stream_id, {"workflow": INVERT})
    assert urls is not None
    url = f"{env.url}/metrics"
    reader = OutputReader(urls.subscribe).start()
    source = LiveSource(urls.publish)
    try:
        source.start(FRAMES)
        await source.wait()
        await reader.wait_for(lambda r: len(r.frames) > 0, timeout=30)
        # Paused: wait until egress has published everything it will and reported it (two
        # scrapes a few report intervals apart agree, and both rates read 0).
        last: list[float] = [-1.0]

        async def still() -> Samples | None:
            _, samples = await scrape(env.http, url)
            published = frames_out(samples, stream_id)
            stood_still = published > 0 and published == last[0]
            last[0] = published
            rates = [
                value(samples, "byoc_stream_fps", stream_id=stream_id, direction=d)
                for d in ("in", "out")
            ]
            return samples if stood_still and rates == [0.0, 0.0] else None

        await wait_until(still, timeout=60, interval=1.5)
        _, samples = await scrape(env.http, url)
        async with env.http.get(f"{env.url}/byoc/session/{stream_id}/status") as response:
            status = await response.json()
        _, after = await scrape(env.http, url)
    finally:
        await source.stop()
        await reader.close()

    assert frames_out(samples, stream_id) == frames_out(after, stream_id)  # it stood still
    figures = status["figures"]
    assert status["status"] == "processing"
    assert (
        value(samples, "byoc_stream_fps", stream_id=stream_id, direction="in") == figures["fps_in"]
    )
    assert (
        value(samples, "byoc_stream_fps", stream_id=stream_id, direction="out")
        == figures["fps_out"]
    )
    dropped = {
        f"{dict(labels)['worker']}.{dict(labels)['reason']}": n
        for (name, labels), n in samples.items()
        if name == "byoc_stream_frames_dropped_total" and dict(labels)["stream_id"] == stream_id
    }
    assert dropped == figures["dropped"]
    lost = sum(
        n
        for key, n in dropped.items()
        if key.split(".", 1)[1] not in LOST_EXCLUDED
        and not key.split(".", 1)[1].startswith("audio_")
    )
    assert lost == figures["frames_dropped"]
    # Every published frame went through the glass-to-glass stage histogram, once.
    published = frames_out(samples, stream_id)
    assert 0 < published <= FRAMES
    end_to_end = value(
        samples, "byoc_stream_latency_seconds_count", stream_id=stream_id, stage="end_to_end"
    )
    assert end_to_end == published
    assert len(reader.frames) <= published
    buckets = sorted(
        (float(dict(labels)["le"]), n)
        for (name, labels), n in samples.items()
        if name == "byoc_stream_latency_seconds_bucket"
        and dict(labels)["stream_id"] == stream_id
        and dict(labels)["stage"] == "end_to_end"
    )
    assert buckets[-1] == (float("inf"), published)
    assert all(a[1] <= b[1] for a, b in itertools.pairwise(buckets))
    assert (value(samples, "byoc_trickle_bytes_total", direction="in") or 0) > 0
    assert (value(samples, "byoc_trickle_bytes_total", direction="out") or 0) > 0
    for role in ("ingest", "infer", "egress"):
        assert value(samples, "byoc_worker_state", role=role, index="0", state="ready") == 1
        assert (value(samples, "byoc_worker_cpu_seconds_total", role=role, index="0") or 0) > 0

    async with await stop_via_orch(env, stream_id) as response:
        assert response.status == 200
    session = env.runner.runtime.sessions.get(stream_id)
    await wait_until(lambda: session is not None and not session.live, timeout=30)
    for _ in range(3):  # the workers' final figures, sent as they stop, must not revive it
        _, samples = await scrape(env.http, url)
        assert stream_id not in stream_ids(samples)
