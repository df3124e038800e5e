"""Media round trip over real trickle: clip -> FFmpeg's encoder/muxer -> our trickle publisher ->
our trickle server (loopback HTTP) -> our trickle subscriber -> ingest demuxer/decoder."""

from __future__ import annotations

import asyncio
import itertools
import secrets

from benchmarks.media.clip import ClipSpec, audio_frame, read_counter, video_yuv420p
from benchmarks.media.live_ts import LiveTsEncoder
from benchmarks.media.segment_decoder import SegmentStreamDecoder
from byoc.livepeer.standin.trickle_server import TrickleServer
from byoc.livepeer.trickle import TricklePublisher, TrickleSubscriber
from ingest.decoded import DecodedAudio, DecodedVideo

SPEC = ClipSpec(width=256, height=192, audio_channels=1)
FRAMES = 60  # 2 s
SEGMENT_SECONDS = 0.5
CONTENT_TYPE = "video/MP2T"


async def _publish(url: str, events: list[tuple[str, int]]) -> None:
    encoder = LiveTsEncoder(
        frame_rate=SPEC.fps,
        segment_seconds=SEGMENT_SECONDS,
        audio_codec="opus",
        audio_rate=SPEC.audio_rate,
        audio_channels=1,
    )
    async with TricklePublisher(url, CONTENT_TYPE) as publisher:
        writer = None
        for index in range(FRAMES):
            start = SPEC.samples_before(index)
            chunks = encoder.video(video_yuv420p(SPEC, index), SPEC.pts(index))
            chunks += encoder.audio(
                audio_frame(SPEC, start, SPEC.samples_before(index + 1) - start)
            )
            if index == FRAMES - 1:
                chunks += encoder.close()
            for chunk in chunks:
                if chunk.first:
                    writer = await publisher.next_segment()
                    events.append(("segment opened", chunk.segment))
                assert writer is not None
                await writer.write(chunk.data)
                if chunk.last:
                    await writer.close()
                    assert await writer.wait()
                    events.append(("segment closed", chunk.segment))
            await asyncio.sleep(0.01)  # a live source: frames trickle out over time


async def _subscribe(
    url: str, events: list[tuple[str, int]]
) -> tuple[list[DecodedVideo], list[DecodedAudio], dict[str, int]]:
    decoder = SegmentStreamDecoder(pixel_format="yuv420p")
    video: list[DecodedVideo] = []
    audio: list[DecodedAudio] = []

    def take(items: list[DecodedVideo | DecodedAudio]) -> None:
        for item in items:
            if isinstance(item, DecodedVideo):
                video.append(item)
                events.append(("frame decoded", item.segment))
            else:
                audio.append(item)

    async with TrickleSubscriber(url, start_seq=0) as subscriber:
        async for segment in subscriber:
            take(decoder.new_segment())
            async for chunk in segment.chunks():
                # iter_any() hands over everything buffered: after a chunk the reader is idle.
                take(decoder.feed(chunk) + decoder.flush_pending())
            if len(video) >= FRAMES:
                break
    take(decoder.close())
    return video, audio, decoder.stats()


async def test_clip_survives_the_trickle_round_trip() -> None:
    async with TrickleServer() as server:
        channel = f"roundtrip-{secrets.token_hex(4)}"
        server.create_channel(channel, CONTENT_TYPE)
        url = server.channel_url(channel)
        events: list[tuple[str, int]] = []
        subscriber = asyncio.create_task(_subscribe(url, events))
        await asyncio.wait_for(_publish(url, events), timeout=60)
        video, audio, stats = await asyncio.wait_for(subscriber, timeout=60)

    # Every frame, in order, readable, with its own timestamps.
    assert [read_counter(f.array, "yuv420p") for f in video if f.array is not None] == list(
        range(FRAMES)
    )
    pts = [f.pts for f in video]
    assert pts == [SPEC.pts(i) for i in range(FRAMES)]
    assert all(b > a for a, b in itertools.pairwise(pts))
    segments = FRAMES // int(SEGMENT_SECONDS * SPEC.fps)
    assert [f.segment for f in video if f.keyframe] == list(range(segments))
    assert stats["video_skipped_before_keyframe"] == 0
    assert stats["demux_cc_errors"] == 0 and stats["demux_pes_truncated"] == 0

    # Audio came along (Opus, 48 kHz) and covers the clip.
    assert {a.sample_rate for a in audio} == {48_000}
    seconds = sum(a.samples for a in audio) / 48_000
    assert abs(seconds - FRAMES / SPEC.fps) < 0.1
    assert abs(audio[0].pts - SPEC.pts(0)) < 0.05 * 90_000

    # Frames were decoded while their segment was still being published: bytes went through
    # the server live and no frame waited for the end of its segment.
    open_segments: set[int] = set()
    decoded_while_open = 0
    for event, segment in events:
        if event == "segment opened":
            open_segments.add(segment)
        elif event == "segment closed":
            open_segments.discard(segment)
        elif segment in open_segments:
            decoded_while_open += 1
    assert decoded_while_open >= FRAMES // 2
