"""The source publishes the clip in real time over a real trickle server; a viewer on the same
channel sees every frame, and the analysis turns the stamps into consistent figures. This is the
benchmark's measuring chain without a runner in between."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from benchmarks.latency.analysis import analyse_stream
from benchmarks.latency.sink import OutputSink
from benchmarks.latency.source import ClipSource, SourceRecord
from benchmarks.media.clip import ClipSpec
from benchmarks.media.looping_clip import LoopingClip
from byoc.livepeer.standin.trickle_server import TrickleServer
from byoc.livepeer.trickle.constants import CONTENT_TYPE_MPEGTS

SPEC = ClipSpec(width=512, height=512, fps=30)


@pytest.fixture
async def server() -> AsyncIterator[TrickleServer]:
    server = TrickleServer()
    await server.start("127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.close()


async def media_arrived(server: TrickleServer, channel: str) -> None:
    """Wait (60 s hang guard) until the channel holds some of the source's bytes."""
    for _ in range(3000):
        found = server.channel(channel)
        if found is not None and found.buffered_bytes > 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"nothing arrived on {channel}")


async def test_clip_through_a_trickle_channel_is_seen_frame_by_frame(
    server: TrickleServer,
) -> None:
    server.create_channel("clip", CONTENT_TYPE_MPEGTS)
    url = f"{server.base_url}clip"
    source = ClipSource("clip", url, spec=SPEC, duration_s=1.5, tail_s=0.3)
    sink = OutputSink("clip", url, fps=SPEC.fps, inverted=False)
    sink.start()
    try:
        await source.prepare()
        t0 = time.monotonic_ns() + 50_000_000
        sink.t0_ns = t0
        record = await source.run(t0, asyncio.Event())
        for _ in range(3000):  # hang guard (60 s) for the last frames
            if sink.highest_index >= record.frames_sent - 1:
                break
            await asyncio.sleep(0.02)
    finally:
        await source.close()
        await sink.close()

    assert record.error is None
    assert record.frames_sent == 45  # the 9 tail frames are sent but not counted
    assert len(record.sent_ns) == 54
    assert record.segments >= 2  # 1 s segments, each opening with a keyframe
    figures = analyse_stream(record, sink.record, None, warmup_s=0.5)
    summary = figures.summary
    assert summary["frames_missing"] == 0, summary["missing_ranges"]
    assert summary["first_output_ms"] is not None and summary["first_output_ms"] > 0
    steady = figures.samples
    assert steady["glass_to_glass"].size == 30  # frames captured after 0.5 s
    # Each frame's parts add up: encode + wire + decode = glass to glass.
    total = steady["encode"] + steady["runner_added"] + steady["decode"]
    assert (abs(total - steady["glass_to_glass"]) < 1e-6).all()
    assert (steady["encode"] > 0).all() and (steady["decode"] > 0).all()
    assert (steady["runner_added"] >= 0).all()


async def test_a_looping_clip_is_replayed_without_encoding_and_seen_frame_by_frame(
    server: TrickleServer,
) -> None:
    clip = LoopingClip.encode(SPEC, 30)  # one 1 s segment: 2.5 s of stream cross two loops
    server.create_channel("loop", CONTENT_TYPE_MPEGTS)
    url = f"{server.base_url}loop"
    source = ClipSource("loop", url, spec=SPEC, duration_s=2.5, tail_s=0.3, clip=clip)
    source.encoder = None  # type: ignore[assignment]  # proves that nothing is encoded
    sink = OutputSink("loop", url, fps=SPEC.fps, inverted=False, counter_period=clip.period)
    sink.start()
    try:
        await source.prepare()
        t0 = time.monotonic_ns() + 50_000_000
        sink.t0_ns = t0
        record = await source.run(t0, asyncio.Event())
        for _ in range(3000):  # hang guard (60 s) for the last frames
            if sink.highest_index >= len(record.sent_ns) - 1:
                break
            await asyncio.sleep(0.02)
    finally:
        await source.close()
        await sink.close()

    assert record.error is None and len(record.sent_ns) == 84
    assert sorted(sink.record.frames) == list(range(84))  # every frame, counters unwrapped
    assert sink.record.unreadable == sink.record.duplicates == sink.record.out_of_order == 0
    assert record.segments == 3


async def test_stop_ends_the_source_early_and_keeps_what_it_sent(server: TrickleServer) -> None:
    server.create_channel("short", CONTENT_TYPE_MPEGTS)
    source = ClipSource("short", f"{server.base_url}short", spec=SPEC, duration_s=10.0)
    stop = asyncio.Event()
    try:
        await source.prepare()
        running = asyncio.create_task(source.run(time.monotonic_ns(), stop))
        await media_arrived(server, "short")
        stop.set()
        record = await asyncio.wait_for(running, 60)
    finally:
        await source.close()
    assert 1 <= len(record.sent_ns) < 300  # stopped before the end of its 10 s
    again = SourceRecord.from_json(record.to_json())
    assert again.sent_ns == record.sent_ns and again.measured_frames == 300


async def test_closed_channel_ends_the_source_with_an_error(server: TrickleServer) -> None:
    server.create_channel("gone", CONTENT_TYPE_MPEGTS)
    source = ClipSource("gone", f"{server.base_url}gone", spec=SPEC, duration_s=5.0)
    try:
        await source.prepare()
        running = asyncio.create_task(source.run(time.monotonic_ns(), asyncio.Event()))
        await media_arrived(server, "gone")
        server.close_channel("gone")
        record = await asyncio.wait_for(running, 60)
    finally:
        await source.close()
    assert record.error is not None
    assert len(record.sent_ns) < 150
