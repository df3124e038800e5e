"""The ingest worker as the parent runs it: a spawned process with the real worker runtime
(``ipc.child.run_worker``) over a socketpair control channel, a real trickle server and a real
ring created by the test (playing the parent)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools

import pytest

from benchmarks.media.clip import ClipSpec, TsSegment, ffmpeg_ts_segments, read_counter
from byoc.livepeer.trickle import TricklePublisher
from ingest.worker import main as ingest_main
from ipc.frame import Frame, FrameFlag
from ipc.messages import (
    Heartbeat,
    IngestConfig,
    StreamAudio,
    StreamStart,
    StreamState,
    StreamStats,
    StreamStop,
    WorkerError,
)
from ipc.ring import FrameRing
from tests.ingest.stream_helpers import (
    CONTENT_TYPE,
    owned_ring,
    publish_segments,
    ring_spec,
    spawned_worker,
    trickle_channel,
)

SPEC = ClipSpec(width=256, height=192)
SEGMENT = 15


@pytest.fixture(scope="module")
def segments() -> list[TsSegment]:
    return ffmpeg_ts_segments(SPEC, 12 * SEGMENT, segment_frames=SEGMENT, audio_codec="aac")


async def collect(ring: FrameRing, frames: list[Frame], stop: asyncio.Event) -> None:
    """Copy every frame of the ring into ``frames`` until ``stop`` is set."""
    with ring.reader() as reader:
        while not stop.is_set():
            frame = await reader.read_async(copy=True, timeout=0.1)
            if frame is not None:
                frames.append(frame)


async def test_worker_runs_a_stream_from_start_to_stop(segments: list[TsSegment]) -> None:
    spec = ring_spec()
    async with (
        owned_ring(spec) as ring,
        trickle_channel() as (_server, _name, url),
        spawned_worker(ingest_main, "ingest") as worker,
    ):
        frames: list[Frame] = []
        done = asyncio.Event()
        reader = asyncio.create_task(collect(ring, frames, done))
        config = IngestConfig(ring=spec, subscribe_url=url, stats_interval_s=0.2)
        await worker.send(StreamStart(stream_id="w-1", config=config))
        async with TricklePublisher(url, CONTENT_TYPE, delete_on_close=False) as publisher:
            await publish_segments(publisher, segments[:2])
            got = worker.received
            await got.wait_for(StreamState, lambda m: m.state == "processing")
            await got.wait_for(StreamStats, lambda m: m.frames_in == 2 * SEGMENT)
            busy = await got.wait_for(Heartbeat, lambda m: m.active_streams == 1)
            await worker.send(StreamStop(stream_id="w-1", reason="test"))
            await worker.send(StreamStop(stream_id="unknown"))  # ignored
            idle = await got.wait_for(
                Heartbeat, lambda m: m.seq > busy.seq and not m.active_streams
            )
        done.set()
        await reader
        # The worker gave the writer role up with the stream.
        ring.writer().close()

    assert [read_counter(f.array, "yuv420p") for f in frames] == list(range(2 * SEGMENT))
    assert all(m.stream_id == "w-1" for m in got.of(StreamAudio))
    assert len(got.of(StreamAudio)) > 0
    assert got.of(WorkerError) == [] and idle.active_streams == 0


async def test_worker_restart_resumes_frames_in_the_same_ring(segments: list[TsSegment]) -> None:
    spec = ring_spec()
    async with owned_ring(spec) as ring, trickle_channel() as (_server, _name, url):
        frames: list[Frame] = []
        done = asyncio.Event()
        reader = asyncio.create_task(collect(ring, frames, done))
        config = IngestConfig(ring=spec, subscribe_url=url, audio=False)
        start = StreamStart(stream_id="w-2", config=config)
        async with (
            spawned_worker(ingest_main, "ingest") as worker,
            TricklePublisher(url, CONTENT_TYPE, delete_on_close=False) as publisher,
        ):
            await worker.send(start)
            live = asyncio.create_task(publish_segments(publisher, segments, frame_interval=1 / 30))
            try:
                await worker.received.wait_for(StreamState, lambda m: m.state == "processing")
                before = len(frames)
                await worker.kill()  # kill -9 mid-stream
                killed_at = len(frames)
                await worker.start()  # the supervisor's restart
                await worker.send(start)  # the parent resumes the stream on the same ring
                await worker.received.wait_for(StreamState, lambda m: m.state == "processing")
                await asyncio.wait_for(live, 60)
                last = len(segments) * SEGMENT - 1
                for _ in range(3000):  # hang guard (60 s) for the last frame to be decoded
                    if frames and read_counter(frames[-1].array, "yuv420p") == last:
                        break
                    await asyncio.sleep(0.02)
            finally:
                live.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await live
                done.set()
                await reader

    assert before > 0 and len(frames) > killed_at
    resumed = frames[killed_at]
    assert resumed.flags & FrameFlag.DISCONTINUITY and resumed.flags & FrameFlag.KEYFRAME
    assert resumed.seq > frames[killed_at - 1].seq  # the ring's sequence goes on
    read = [read_counter(f.array, "yuv420p") for f in frames]
    counters = [c for c in read if c is not None]
    assert (
        len(counters) == len(frames)
        and counters == sorted(counters)
        and counters[-1] == len(segments) * SEGMENT - 1
    )
    assert all(b.pts > a.pts for a, b in itertools.pairwise(frames))


async def test_worker_reports_a_stream_it_cannot_start() -> None:
    async with spawned_worker(ingest_main, "ingest") as worker:
        config = IngestConfig(ring=ring_spec(), subscribe_url="http://127.0.0.1:9/x")
        await worker.send(StreamStart(stream_id="w-3", config=config))  # no such ring
        error = await worker.received.wait_for(WorkerError)
        assert error.stream_id == "w-3" and error.worker == "ingest" and not error.fatal
        beat = await worker.received.wait_for(Heartbeat, lambda m: m.seq > 2)
        assert beat.active_streams == 0
