"""The ingest stream service in-process against a real trickle server on loopback and a real
shared-memory ring: FFmpeg-muxed segments published live in, frames read back from the ring.

The stream's ``send`` (its control channel to the parent) is a recorder (``SentMessages``);
everything else is the real thing."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

import pytest

from benchmarks.media.clip import (
    ClipSpec,
    TsSegment,
    audio_frame,
    ffmpeg_ts_segments,
    read_counter,
    video_yuv420p,
)
from benchmarks.media.live_ts import LiveTsEncoder, TsSegmentWriter
from byoc.livepeer.trickle import TricklePublisher
from ingest.decode import split_adts
from ingest.stream import IngestStream, TrickleSource
from ingest.tsdemux import TS_PACKET_SIZE, TsDemuxer
from ipc.frame import FrameFlag, Stage
from ipc.messages import IngestConfig, StreamAudio, StreamState, StreamStats
from tests.ingest.stream_helpers import (
    CONTENT_TYPE,
    FlakyLink,
    SentMessages,
    owned_ring,
    publish_segments,
    read_frames,
    ring_spec,
    trickle_channel,
)

SPEC = ClipSpec(width=256, height=192)
SEGMENT = 15
VIDEO_PID = 0x100


@pytest.fixture(scope="module")
def aac_segments() -> list[TsSegment]:
    return ffmpeg_ts_segments(SPEC, 2 * SEGMENT, segment_frames=SEGMENT, audio_codec="aac")


@pytest.fixture(scope="module")
def video_segments() -> list[TsSegment]:
    return ffmpeg_ts_segments(SPEC, 5 * SEGMENT, segment_frames=SEGMENT)


def counters(frames: list) -> list[int | None]:  # type: ignore[type-arg]
    return [read_counter(f.array, "yuv420p") for f in frames]


async def poll_until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll ``condition`` in the event loop; ``timeout`` is only a hang guard."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met"
        await asyncio.sleep(0.02)


def source_audio(segments: list[TsSegment]) -> list[tuple[int, bytes]]:
    """``(pts, ADTS frame)`` of every AAC frame the segments carry (each segment has its own
    encoder, so their audio overlaps a little at the joins)."""
    out = []
    for segment in segments:
        demuxer = TsDemuxer()
        for packet in demuxer.feed(segment.data) + demuxer.flush():
            if packet.stream.kind == "audio" and packet.pts is not None:
                offset = 0
                for data, rate, samples in split_adts(packet.data):
                    out.append((packet.pts + offset * 90_000 // rate, data))
                    offset += samples
    return out


def config(ring_spec_, url: str, **changes: object) -> IngestConfig:  # type: ignore[no-untyped-def]
    return IngestConfig(ring=ring_spec_, subscribe_url=url, **changes)  # type: ignore[arg-type]


async def test_live_frames_reach_the_ring_with_pts_flags_stamps_and_audio(
    aac_segments: list[TsSegment],
) -> None:
    spec = ring_spec()
    sent = SentMessages()
    async with owned_ring(spec) as ring, trickle_channel() as (_server, _name, url):
        stream = IngestStream("live-1", config(spec, url, stats_interval_s=0.2), sent.send)
        stream.start()
        try:
            reader_task = asyncio.create_task(read_frames(ring, 2 * SEGMENT))
            publisher = TricklePublisher(url, CONTENT_TYPE)  # deletes the channel on close
            await publish_segments(publisher, aac_segments)
            frames = await reader_task
            await publisher.close()
            ended = await sent.wait_for(StreamState, lambda m: m.state == "ended")
        finally:
            await stream.stop()

    assert counters(frames) == list(range(2 * SEGMENT))
    assert [f.pts for f in frames] == [SPEC.pts(i) for i in range(2 * SEGMENT)]
    assert {(f.width, f.height, str(f.pixel_format)) for f in frames} == {(256, 192, "yuv420p")}
    keyframes = [i for i, f in enumerate(frames) if f.flags & FrameFlag.KEYFRAME]
    assert keyframes == [0, SEGMENT]
    assert not any(f.flags & (FrameFlag.DISCONTINUITY | FrameFlag.END_OF_STREAM) for f in frames)
    for frame in frames:
        first, decoded, written = (
            int(frame.stamps[s])
            for s in (Stage.INGEST_FIRST_BYTE, Stage.DECODED, Stage.INGEST_WRITTEN)
        )
        assert 0 < first <= decoded <= written
        assert not frame.stamps[Stage.INFER_READ :].any()
    assert [f.seq for f in frames] == list(range(1, 2 * SEGMENT + 1))

    # States: processing once (first frame), then ended when the channel went away.
    states = [m.state for m in sent.of(StreamState)]
    assert states == ["processing", "ended"] and ended.worker == "ingest"

    # Audio: every ADTS frame forwarded raw, on the video's timeline.
    audio = sent.of(StreamAudio)
    assert audio and {(a.codec, a.sample_rate, a.channels) for a in audio} == {("aac", 48_000, 1)}
    assert all(a.data[0] == 0xFF and a.data[1] & 0xF0 == 0xF0 for a in audio)
    assert [(a.pts, a.data) for a in audio] == source_audio(aac_segments)
    assert abs(audio[0].pts - SPEC.pts(0)) < 0.05 * 90_000
    seconds = len(audio) * 1024 / 48_000
    assert seconds == pytest.approx(2 * SEGMENT / SPEC.fps, abs=0.15)

    # Figures: the final report counts every frame and has decode latencies.
    stats = sent.of(StreamStats)
    assert stats and stats[-1].frames_in == 2 * SEGMENT and stats[-1].worker == "ingest"
    decode_samples = sum(s.stages["decode"].count for s in stats if "decode" in s.stages)
    assert decode_samples == 2 * SEGMENT
    assert stats[-1].dropped["decode_error"] == 0
    assert stats[-1].dropped["skipped_until_keyframe"] == 0


async def test_late_join_starts_at_the_live_edge(video_segments: list[TsSegment]) -> None:
    spec = ring_spec()
    sent = SentMessages()
    async with owned_ring(spec) as ring, trickle_channel() as (_server, _name, url):
        async with TricklePublisher(url, CONTENT_TYPE, delete_on_close=False) as publisher:
            await publish_segments(publisher, video_segments[:3], frame_interval=0)
            stream = IngestStream("late-1", config(spec, url), sent.send)
            try:
                # Segment 3 starts after the stream subscribed: -2 is the segment being written.
                async with publisher.segment() as writer:
                    await writer.write(video_segments[3].frame_chunks[0])
                    stream.start()
                    reader_task = asyncio.create_task(read_frames(ring, SEGMENT + 3))
                    # subscribed, and reading the segment being written
                    await poll_until(lambda: stream.source.segments >= 1)  # type: ignore[union-attr]
                    for chunk in video_segments[3].frame_chunks[1:]:
                        await writer.write(chunk)
                        await asyncio.sleep(0.004)
                await publish_segments(publisher, video_segments[4:])
                frames = await reader_task
            finally:
                await stream.stop()
    # Nothing of the three earlier segments; the current one from its keyframe on.
    assert counters(frames) == list(range(3 * SEGMENT, 4 * SEGMENT + 3))
    assert frames[0].flags & FrameFlag.KEYFRAME
    assert stream.source.counters()["skipped_until_keyframe"] == 0  # type: ignore[union-attr]


async def test_input_channel_closed_ends_the_stream_and_frees_the_ring(
    video_segments: list[TsSegment],
) -> None:
    spec = ring_spec()
    sent = SentMessages()
    async with owned_ring(spec) as ring, trickle_channel() as (server, name, url):
        stream = IngestStream("closed-1", config(spec, url), sent.send)
        stream.start()
        try:
            async with TricklePublisher(url, CONTENT_TYPE, delete_on_close=False) as publisher:
                await publish_segments(publisher, video_segments[:1])
                await sent.wait_for(StreamState, lambda m: m.state == "processing")
                server.close_channel(name)  # the orchestrator tears the channel down
                ended = await sent.wait_for(StreamState, lambda m: m.state != "processing")
        finally:
            await stream.stop()
        assert ended.state == "ended" and not stream.running
        # The writer role went with the stream: another producer can take it.
        ring.writer().close()


async def test_segment_without_keyframe_waits_for_the_next_keyframe(
    video_segments: list[TsSegment],
) -> None:
    first = video_segments[0]
    # The first segment loses its IDR picture: keep PAT/PMT, drop the video packets of frame 0.
    head = first.frame_chunks[0]
    kept = b"".join(
        head[i : i + TS_PACKET_SIZE]
        for i in range(0, len(head), TS_PACKET_SIZE)
        if ((head[i + 1] & 0x1F) << 8 | head[i + 2]) != VIDEO_PID
    )
    broken = TsSegment(
        first_frame=0, frame_count=SEGMENT, frame_chunks=[kept, *first.frame_chunks[1:]]
    )
    spec = ring_spec()
    sent = SentMessages()
    async with owned_ring(spec) as ring, trickle_channel() as (_server, _name, url):
        stream = IngestStream("nokey-1", config(spec, url, stats_interval_s=0.1), sent.send)
        stream.start()
        try:
            reader_task = asyncio.create_task(read_frames(ring, SEGMENT))
            async with TricklePublisher(url, CONTENT_TYPE, delete_on_close=False) as publisher:
                await publish_segments(publisher, [broken, video_segments[1]])
                frames = await reader_task
            # Reports are periodic and packets are decoded at the input's pace: a report may come
            # mid-segment with part of the count; wait for the one that has every skipped frame.
            report = await sent.wait_for(
                StreamStats,
                lambda m: m.dropped.get("skipped_until_keyframe", 0) >= SEGMENT - 1,
            )
        finally:
            await stream.stop()
    assert counters(frames) == list(range(SEGMENT, 2 * SEGMENT))
    assert report.dropped["skipped_until_keyframe"] == SEGMENT - 1


async def test_resolution_changes_mid_stream_and_oversized_frames_are_scaled() -> None:
    small = ffmpeg_ts_segments(SPEC, SEGMENT, segment_frames=SEGMENT)
    medium_spec = ClipSpec(width=320, height=240)
    medium = ffmpeg_ts_segments(medium_spec, 2 * SEGMENT, segment_frames=SEGMENT)[1:]
    large_spec = ClipSpec(width=640, height=480)
    large = ffmpeg_ts_segments(large_spec, 3 * SEGMENT, segment_frames=SEGMENT)[2:]
    spec = ring_spec(width=320, height=240)
    sent = SentMessages()
    async with owned_ring(spec) as ring, trickle_channel() as (_server, _name, url):
        stream = IngestStream("sizes-1", config(spec, url, stats_interval_s=0.1), sent.send)
        stream.start()
        try:
            reader_task = asyncio.create_task(read_frames(ring, 3 * SEGMENT))
            async with TricklePublisher(url, CONTENT_TYPE, delete_on_close=False) as publisher:
                await publish_segments(publisher, [*small, *medium, *large])
                frames = await reader_task
            report = await sent.wait_for(StreamStats, lambda m: m.frames_in == 3 * SEGMENT)
        finally:
            await stream.stop()
    sizes = [(f.width, f.height) for f in frames]
    assert sizes == [(256, 192)] * SEGMENT + [(320, 240)] * (2 * SEGMENT)
    assert [f.pts for f in frames] == [SPEC.pts(i) for i in range(3 * SEGMENT)]
    assert counters(frames[: 2 * SEGMENT]) == list(range(2 * SEGMENT))
    assert report.dropped["scaled"] == SEGMENT


async def test_opus_audio_is_forwarded_raw_and_can_be_switched_off() -> None:
    segments = ffmpeg_ts_segments(SPEC, SEGMENT, segment_frames=SEGMENT, audio_codec="opus")
    for audio_on in (True, False):
        spec = ring_spec()
        sent = SentMessages()
        async with owned_ring(spec) as ring, trickle_channel() as (_server, _name, url):
            stream = IngestStream("opus-1", config(spec, url, audio=audio_on), sent.send)
            stream.start()
            try:
                reader_task = asyncio.create_task(read_frames(ring, SEGMENT))
                async with TricklePublisher(url, CONTENT_TYPE, delete_on_close=False) as publisher:
                    await publish_segments(publisher, segments)
                    frames = await reader_task
            finally:
                await stream.stop()
        assert counters(frames) == list(range(SEGMENT))
        audio = sent.of(StreamAudio)
        if not audio_on:
            assert audio == []
            continue
        assert {(a.codec, a.sample_rate, a.channels) for a in audio} == {("opus", 48_000, 1)}
        # Raw Opus packets (no Opus-in-TS control header), 20 ms apart.
        assert all(a.data[0] != 0x7F for a in audio)
        steps = {b.pts - a.pts for a, b in itertools.pairwise(audio)}
        assert steps == {1_800}


async def test_stream_start_needs_a_source_and_an_existing_ring() -> None:
    spec = ring_spec()
    with pytest.raises(ValueError, match="subscribe_url, source_path or whip"):
        IngestStream("bad-1", IngestConfig(ring=spec), SentMessages().send)
    stream = IngestStream("bad-2", config(spec, "http://127.0.0.1:9/x"), SentMessages().send)
    with pytest.raises(FileNotFoundError):
        stream.start()  # the parent has not created the ring


async def test_network_outage_resubscribes_and_resumes_after_the_gap(
    video_segments: list[TsSegment],
) -> None:
    spec = ring_spec()
    sent = SentMessages()
    async with owned_ring(spec) as ring, trickle_channel() as (server, _name, url):
        assert server.base_url is not None
        port = int(server.base_url.split(":")[2].split("/")[0])
        link = FlakyLink(port)
        await link.start()
        stream = IngestStream("outage-1", config(spec, link.url(url)), sent.send)
        assert isinstance(stream.source, TrickleSource)
        stream.source.subscriber_retries = 1  # give up on a subscription quickly
        frames: list = []  # type: ignore[type-arg]
        done = asyncio.Event()

        async def collect() -> None:
            with ring.reader() as reader:
                while not done.is_set():
                    frame = await reader.read_async(timeout=0.1)
                    if frame is not None:
                        frames.append(frame)

        reader_task = asyncio.create_task(collect())
        stream.start()
        try:
            async with TricklePublisher(url, CONTENT_TYPE, delete_on_close=False) as publisher:
                live = asyncio.create_task(
                    publish_segments(publisher, video_segments, frame_interval=1 / 30)
                )
                await sent.wait_for(StreamState, lambda m: m.state == "processing")
                link.down()  # the network goes away until the stream has noticed
                cut_at = len(frames)
                await poll_until(lambda: stream.source.resubscribes >= 1)  # type: ignore[union-attr]
                link.up()
                await asyncio.wait_for(live, 60)
                await poll_until(lambda: counters(frames[-1:]) == [5 * SEGMENT - 1])
        finally:
            done.set()
            await reader_task
            await stream.stop()
            await link.close()
    assert stream.source.resubscribes >= 1
    assert [m.state for m in sent.of(StreamState)] == ["processing"]  # neither ended nor failed
    resumed = frames[cut_at:]
    assert resumed, "no frame after the outage"
    gap = next(i for i, f in enumerate(frames) if i >= cut_at and f.flags & FrameFlag.DISCONTINUITY)
    assert frames[gap].flags & FrameFlag.KEYFRAME
    seen = counters(frames)
    assert seen == sorted(seen) and seen[-1] == 5 * SEGMENT - 1  # type: ignore[type-var]


async def test_a_subscription_that_hangs_silently_is_replaced(
    video_segments: list[TsSegment],
) -> None:
    spec = ring_spec()
    sent = SentMessages()
    async with owned_ring(spec) as ring, trickle_channel() as (server, _name, url):
        assert server.base_url is not None
        link = FlakyLink(int(server.base_url.split(":")[2].split("/")[0]))
        await link.start()
        stream = IngestStream("hang-1", config(spec, link.url(url)), sent.send)
        assert isinstance(stream.source, TrickleSource)
        stream.source.stall_timeout_s = 0.4
        frames: list = []  # type: ignore[type-arg]
        done = asyncio.Event()

        async def collect() -> None:
            with ring.reader() as reader:
                while not done.is_set():
                    frame = await reader.read_async(timeout=0.1)
                    if frame is not None:
                        frames.append(frame)

        reader_task = asyncio.create_task(collect())
        stream.start()
        try:
            async with TricklePublisher(url, CONTENT_TYPE, delete_on_close=False) as publisher:
                live = asyncio.create_task(
                    publish_segments(publisher, video_segments, frame_interval=1 / 30)
                )
                await sent.wait_for(StreamState, lambda m: m.state == "processing")
                link.is_silent = True  # bytes stop, nothing fails
                await poll_until(lambda: stream.source.resubscribes >= 1)  # type: ignore[union-attr]
                cut_at = len(frames)
                link.is_silent = False
                await asyncio.wait_for(live, 60)
                await poll_until(lambda: counters(frames[-1:]) == [5 * SEGMENT - 1])
        finally:
            done.set()
            await reader_task
            await stream.stop()
            await link.close()
    assert stream.source.resubscribes >= 1
    assert [m.state for m in sent.of(StreamState)] == ["processing"]
    assert len(frames) > cut_at
    seen = counters(frames)
    assert seen == sorted(seen) and seen[-1] == 5 * SEGMENT - 1  # type: ignore[type-var]


@pytest.mark.parametrize("bframes", [0, 2], ids=["zerolatency", "b-frames"])
async def test_a_live_sender_with_aac_audio_gets_every_frame_into_the_ring(bframes: int) -> None:
    """FFmpeg's own muxer with AAC, fed one frame at a time in real time the way a camera
    gateway publishes (its interleaving holds each segment's last picture until the audio is
    flushed at the segment's end): every picture reaches the ring, in order, nothing counted."""
    spec = ClipSpec(width=320, height=180, audio_channels=2)
    count = 3 * SEGMENT
    ring = ring_spec(width=spec.width, height=spec.height)
    sent = SentMessages()
    encoder = LiveTsEncoder(
        frame_rate=spec.fps,
        segment_seconds=SEGMENT / spec.fps,
        audio_codec="aac",
        audio_channels=spec.audio_channels,
        bframes=bframes,
    )
    async with owned_ring(ring) as owned, trickle_channel() as (_server, _name, url):
        stream = IngestStream("live-aac", config(ring, url, stats_interval_s=0.2), sent.send)
        stream.start()
        try:
            reader_task = asyncio.create_task(read_frames(owned, count))
            publisher = TricklePublisher(url, CONTENT_TYPE)  # deletes the channel on close
            segments = TsSegmentWriter(publisher)
            for index in range(count):
                chunks = encoder.video(video_yuv420p(spec, index), spec.pts(index))
                start = spec.samples_before(index)
                chunks += encoder.audio(
                    audio_frame(spec, start, spec.samples_before(index + 1) - start)
                )
                await segments.write(chunks)
                await asyncio.sleep(1 / spec.fps)
            await segments.write(encoder.close())
            await publisher.close()  # the end of the input: held pictures are decoded too
            frames = await reader_task
            await sent.wait_for(StreamState, lambda m: m.state == "ended")
        finally:
            await stream.stop()

    assert counters(frames) == list(range(count))
    assert [f.pts for f in frames] == [spec.pts(i) for i in range(count)]
    final = sent.of(StreamStats)[-1]
    assert final.frames_in == count
    assert not any(final.dropped.values()), final.dropped
    audio = sent.of(StreamAudio)
    assert audio and {(a.codec, a.channels) for a in audio} == {("aac", 2)}
