"""``GET /metrics`` (``byoc.metrics``): series built from what the parent receives, with the
real supervisor and a spawned worker that reports figures, the stand-in orchestrator and a real
HTTP client; every page is parsed with ``prometheus_client.parser``."""

from __future__ import annotations

import os
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.latency.processes import free_port
from byoc.metrics import LATENCY_BUCKETS_S, _StageHistogram, process_figures, worker_labels
from byoc.sessions import SessionState
from ipc.stats import LatencyHistogram
from tests.byoc.harness import running, wait_until
from tests.byoc.stream_helpers import start_via_orch, stop_via_orch
from tests.byoc.test_streams import FakeWorkerMediaPath, started_env

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape as ``{(name, sorted labels): value}`` (raises if malformed)."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


async def scrape(http: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, Samples]:
    async with http.get(url, **kwargs) as response:
        text = await response.text()
        if response.status != 200:
            return response.status, {}
        assert response.headers["Content-Type"].startswith("text/plain")
        return 200, parse(text)


def stream_ids(samples: Samples) -> set[str]:
    return {v for (_, labels) in samples for k, v in labels if k == "stream_id"}


# --- pieces ----------------------------------------------------------------------------------


def test_stage_histogram_from_a_worker_histogram() -> None:
    worker = LatencyHistogram()
    for _ in range(10):
        worker.record(3_000_000)  # 3 ms
    for _ in range(5):
        worker.record(40_000_000)  # 40 ms
    worker.record(20_000_000_000)  # 20 s: beyond the last bound
    histogram = _StageHistogram("egress")
    histogram.add(worker.summary())
    cumulative = dict(histogram.cumulative())
    assert cumulative["0.0025"] == 0
    assert cumulative["0.005"] == 10
    assert cumulative["0.035"] == 10
    assert cumulative["0.05"] == 15
    assert cumulative["10.0"] == 15
    assert cumulative["+Inf"] == 16
    assert len(cumulative) == len(LATENCY_BUCKETS_S) + 1
    assert abs(histogram.sum_s - (0.030 + 0.200 + 20.0)) < 1e-6


def test_worker_labels_and_process_figures() -> None:
    assert worker_labels("ingest") == ("ingest", "0")
    assert worker_labels("infer-1") == ("infer", "1")
    figures = process_figures(os.getpid())
    assert figures is not None and figures[0] > 0 and figures[1] > 1024 * 1024
    assert process_figures(2**22 + 7) is None  # above pid_max: never a process


# --- the route, with a real worker reporting -------------------------------------------------


async def test_a_live_stream_has_series_that_match_its_status_and_go_when_it_ends() -> None:
    manager, env = await started_env(FakeWorkerMediaPath())
    try:
        async with await start_via_orch(env, "m1", {"params": {}}) as response:
            assert response.status == 200
        url = f"{env.url}/metrics"

        async def reported() -> bool:
            _, samples = await scrape(env.http, url)
            return value(samples, "byoc_stream_fps", stream_id="m1", direction="out") == 29.0

        await wait_until(reported, timeout=30)
        status, samples = await scrape(env.http, url)
        assert status == 200
        async with env.http.get(f"{env.url}/byoc/session/m1/status") as response:
            figures = (await response.json())["figures"]
        assert (
            value(samples, "byoc_stream_fps", stream_id="m1", direction="in") == figures["fps_in"]
        )
        assert (
            value(samples, "byoc_stream_fps", stream_id="m1", direction="out") == figures["fps_out"]
        )
        for key, n in figures["dropped"].items():
            worker, reason = key.split(".", 1)
            assert (
                value(
                    samples,
                    "byoc_stream_frames_dropped_total",
                    stream_id="m1",
                    worker=worker,
                    reason=reason,
                )
                == n
            )
        assert (
            value(
                samples, "byoc_stream_frames_total", stream_id="m1", worker="ingest", direction="in"
            )
            == 59
        )
        assert (
            value(samples, "byoc_sessions", capability="comfystream-video", state="processing") == 1
        )
        assert value(samples, "byoc_worker_state", role="ingest", index="0", state="ready") == 1
        assert value(samples, "byoc_worker_restarts_total", role="ingest", index="0") == 0
        assert (
            value(samples, "byoc_worker_resident_memory_bytes", role="ingest", index="0") or 0
        ) > 0
        # How old the last heartbeat is depends on the machine's load: only its presence counts.
        age = value(samples, "byoc_worker_heartbeat_age_seconds", role="ingest", index="0")
        assert age is not None and age >= 0
        assert (
            value(samples, "byoc_registration_state", orchestrator=env.orch_url, state="registered")
            == 1
        )
        assert value(samples, "byoc_admissions_refused_total", reason="stream_capacity") == 0

        async with await stop_via_orch(env, "m1") as response:
            assert response.status == 200
        session = env.runner.runtime.sessions.get("m1")
        await wait_until(lambda: session is not None and not session.live, timeout=30)
        # Without a scrape in between, the next stream's first figures drop the ended one's.
        async with await start_via_orch(env, "m2", {"params": {}}) as response:
            assert response.status == 200
        kept = env.runner.runtime.metrics.streams()
        await wait_until(lambda: "m2" in kept, timeout=30)
        assert "m1" not in kept
        status, samples = await scrape(env.http, url)
        assert stream_ids(samples) == {"m2"}
        assert (
            value(samples, "byoc_sessions", capability="comfystream-video", state="processing") == 1
        )
    finally:
        await manager.__aexit__(None, None, None)


async def test_refusals_jobs_and_unknown_capabilities_use_closed_label_sets() -> None:
    async with running(capacity=1) as env:
        url = f"{env.url}/metrics"
        async with env.http.post(
            f"{env.url}/process/request/text-reversal", json={"text": "abc"}
        ) as response:
            assert response.status == 200
        for name in ("no-such-capability", "another-made-up-one"):
            async with env.http.post(f"{env.url}/process/request/{name}", json={}) as response:
                assert response.status == 404
        async with await start_via_orch(env, "s1", {"params": {}}) as response:
            assert response.status == 200
        async with await start_via_orch(env, "s2", {"params": {}}) as response:
            assert response.status == 503
        status, samples = await scrape(env.http, url)
        assert status == 200
        assert (
            value(samples, "byoc_jobs_total", capability="text-reversal", status="completed") == 1
        )
        assert value(samples, "byoc_job_duration_seconds_count", capability="text-reversal") == 1
        assert value(samples, "byoc_jobs_total", capability="other", status="not_found") == 2
        assert value(samples, "byoc_admissions_refused_total", reason="stream_capacity") == 1
        labels = {v for (_, label_set) in samples for _, v in label_set}
        assert not {"no-such-capability", "another-made-up-one", "s2"} & labels
        session = env.runner.runtime.sessions.get("s1")
        assert session is not None and session.state is not SessionState.FAILED


async def test_behind_the_token_on_the_main_port() -> None:
    async with running(token="s3cret", wait_registered=False) as env:
        url = f"{env.url}/metrics"
        status, _ = await scrape(env.http, url)
        assert status == 401
        status, samples = await scrape(env.http, url, headers={"Authorization": "Bearer s3cret"})
        assert status == 200
        assert value(samples, "byoc_stream_capacity") == env.settings.capacity
        assert (value(samples, "byoc_parent_process_resident_memory_bytes") or 0) > 0


async def test_on_its_own_listener_without_the_token() -> None:
    port = free_port()
    async with running(token="s3cret", metrics_port=port, wait_registered=False) as env:
        assert env.runner.metrics_url == f"http://127.0.0.1:{port}/metrics"
        status, _ = await scrape(
            env.http, f"{env.url}/metrics", headers={"Authorization": "Bearer s3cret"}
        )
        assert status == 404  # stream ids stay off the public port
        status, samples = await scrape(env.http, env.runner.metrics_url)
        assert status == 200
        assert value(samples, "byoc_stream_capacity") == env.settings.capacity
