"""Figures read out of status events, in the shapes a runner may send them, and the reader
following a real events channel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from benchmarks.latency.analysis import runner_drops, stage_summary
from benchmarks.latency.events import EventLog, EventsReader, drops_of, stages_of
from byoc.livepeer.standin.trickle_server import TrickleServer
from byoc.livepeer.trickle import TricklePublisher, publish_json
from byoc.livepeer.trickle.constants import CONTENT_TYPE_JSON

TOTALS_ONLY: dict[str, Any] = {
    "type": "status",
    "state": "processing",
    "latency_ms": 12.0,
    "frames_dropped": 3,
}
PER_WORKER: dict[str, Any] = {
    "type": "status",
    "state": "processing",
    "frames_dropped": 3,
    "workers": {
        "ingest": {
            "dropped": {"decode_error": 1},
            "stages": {"decode": {"p50": 0.4, "p95": 0.6, "p99": 0.8, "count": 30}},
        },
        "infer": {
            "dropped": {"infer_behind": 2},
            "stages": {"infer": {"p50": 9.0, "p95": 13.0, "p99": 15.0, "count": 30}},
        },
    },
}


def test_totals_only_event_gives_the_total_and_no_stages() -> None:
    assert stages_of(TOTALS_ONLY) == {}
    assert drops_of(TOTALS_ONLY) == {"total": 3}


def test_per_worker_figures_are_read_with_worker_prefixes() -> None:
    stages = stages_of(PER_WORKER)
    assert set(stages) == {"decode", "infer"}
    assert stages["infer"].p99 == 15.0 and stages["infer"].count == 30
    assert drops_of(PER_WORKER) == {"ingest.decode_error": 1, "infer.infer_behind": 2}
    top = {"stages": {"encode": {"p50": 2, "p95": 3, "p99": 4, "count": 5}}, "dropped": {"x": 1}}
    assert set(stages_of(top)) == {"encode"} and drops_of(top) == {"x": 1}


def test_summary_over_intervals_and_drops_over_the_run() -> None:
    later = {**PER_WORKER, "workers": {**PER_WORKER["workers"]}}
    later["workers"]["infer"] = {
        "dropped": {"infer_behind": 5},
        "stages": {"infer": {"p50": 11.0, "p95": 14.0, "p99": 30.0, "count": 30}},
    }
    idle = {"type": "status", "workers": {"infer": {"stages": {"infer": {"p50": 0, "count": 0}}}}}
    summary = stage_summary([(1.0, PER_WORKER), (2.0, later), (3.0, idle)])
    assert summary["infer"] == {
        "p50": 10.0,
        "p95": 13.5,
        "p99": 22.5,
        "worst_p99": 30.0,
        "intervals": 2,
        "frames": 60,
    }
    log = EventLog("s", [(1, TOTALS_ONLY), (2, PER_WORKER), (3, later)])
    assert runner_drops(log) == {"ingest.decode_error": 1, "infer.infer_behind": 5}


@pytest.fixture
async def server() -> AsyncIterator[TrickleServer]:
    server = TrickleServer()
    await server.start("127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.close()


async def test_reader_follows_the_channel_and_waits_for_a_state(server: TrickleServer) -> None:
    server.create_channel("s-events", CONTENT_TYPE_JSON)
    url = f"{server.base_url}s-events"
    reader = EventsReader("s", url)
    reader.start()
    try:
        async with TricklePublisher(url, CONTENT_TYPE_JSON, delete_on_close=False) as pub:
            for state in ("starting", "ready"):
                event = {
                    "queue_event_type": "ai_stream_events",
                    "event": {**TOTALS_ONLY, "state": state},
                }
                assert await (await publish_json(pub, event)).wait()
            await publish_json(
                pub, {"queue_event_type": "stream_heartbeat", "event": {"type": "heartbeat"}}
            )
            assert await reader.wait_for_state({"ready", "processing"}, 5.0) == "ready"
            assert await reader.wait_for_state({"failed"}, 0.2) is None
        for _ in range(100):
            if reader.log.other:
                break
            await asyncio.sleep(0.02)
    finally:
        await reader.close()
    assert reader.log.states() == ["starting", "ready"]
    assert reader.log.other == 1
