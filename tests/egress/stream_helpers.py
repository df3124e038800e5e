"""Helpers for the egress stream tests: frames written into a ring as infer writes them, the
input's audio as ingest forwards it, and the published output read back and decoded."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from benchmarks.media.clip import ClipSpec, ffmpeg_ts_segments, video_yuv420p
from benchmarks.media.segment_decoder import SegmentStreamDecoder
from byoc.livepeer.trickle import TrickleSubscriber
from ingest.decode import split_adts, split_ts_opus
from ingest.decoded import DecodedAudio, DecodedVideo
from ingest.tsdemux import EsPacket, TsDemuxer
from ipc.frame import FrameFlag, Stage, new_stamps
from ipc.messages import StreamAudio
from ipc.ring import RingWriter

TB = (1, 90_000)


def write_frame(
    writer: RingWriter,
    spec: ClipSpec,
    index: int,
    *,
    flags: int = 0,
    upstream_ns: int = 2_000_000,
) -> int:
    """Frame ``index`` of the clip as infer writes it: pts, flags and the upstream stamps
    (ingest and infer stages ``upstream_ns`` apart, ending now)."""
    import time

    now = time.monotonic_ns()
    stamps = new_stamps()
    for offset, stage in enumerate(reversed(range(Stage.INFER_WRITTEN + 1))):
        stamps[stage] = now - offset * upstream_ns
    return writer.write(
        video_yuv420p(spec, index),
        pts=spec.pts(index),
        time_base=TB,
        flags=flags or (FrameFlag.KEYFRAME if index == 0 else 0),
        stamps=stamps,
    )


def source_audio(spec: ClipSpec, frames: int, codec: str) -> list[StreamAudio]:
    """The clip's audio as ingest forwards it (one encoder run, so the tone is continuous)."""
    [segment] = ffmpeg_ts_segments(spec, frames, segment_frames=frames, audio_codec=codec)
    demuxer = TsDemuxer()
    out: list[StreamAudio] = []
    packets: list[EsPacket] = demuxer.feed(segment.data) + demuxer.flush()
    for packet in packets:
        if packet.stream.kind != "audio" or packet.pts is None:
            continue
        split = split_adts if codec == "aac" else split_ts_opus
        offset = 0
        for data, rate, samples in split(packet.data):
            out.append(
                StreamAudio(
                    stream_id="",
                    codec=codec,
                    pts=packet.pts + offset * 90_000 // rate,
                    data=data,
                    sample_rate=rate,
                    channels=spec.audio_channels,
                )
            )
            offset += samples
    return out


@dataclass
class Output:
    """What a subscriber of the published channel saw."""

    video: list[DecodedVideo] = field(default_factory=list)
    audio: list[DecodedAudio] = field(default_factory=list)
    segments: list[bytes] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)


async def read_output(url: str, *, until_frames: int | None = None) -> Output:
    """Subscribe from seq 0 and decode until the channel ends (or ``until_frames`` arrived)."""
    out = Output()
    decoder = SegmentStreamDecoder(pixel_format="yuv420p")

    def take(items: list[DecodedVideo | DecodedAudio]) -> None:
        for item in items:
            (out.video if isinstance(item, DecodedVideo) else out.audio).append(item)  # type: ignore[arg-type]

    async with TrickleSubscriber(url, start_seq=0) as subscriber:
        async for segment in subscriber:
            take(decoder.new_segment())
            parts = []
            async for chunk in segment.chunks():
                parts.append(chunk)
                take(decoder.feed(chunk) + decoder.flush_pending())
            out.segments.append(b"".join(parts))
            if until_frames is not None and len(out.video) >= until_frames:
                break
    take(decoder.close())
    out.stats = decoder.stats()
    return out


async def wait_until(predicate: object, timeout: float = 60.0) -> None:
    """Poll ``predicate()`` until true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():  # type: ignore[operator]
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)
