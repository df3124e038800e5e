"""A clip file as an ingest source: real files written by FFmpeg (PyAV), a real ring; the
stream's control channel to the parent is a recorder (``SentMessages``)."""

from __future__ import annotations

import itertools
import time
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import pytest
from av.audio.stream import AudioStream
from av.video.stream import VideoStream

from benchmarks.media.clip import ClipSpec, audio_frame, read_counter, video_frame
from ingest.clip import adts_header, is_adts
from ingest.decode import split_adts
from ingest.stream import IngestStream
from ipc.frame import FrameFlag, Stage
from ipc.messages import IngestConfig, StreamAudio, StreamState, StreamStats
from tests.ingest.stream_helpers import SentMessages, owned_ring, read_frames, ring_spec

SPEC = ClipSpec(width=256, height=192, audio_channels=2)
FRAMES = 20


def write_clip(
    path: Path, spec: ClipSpec, frames: int, *, audio_codec: str | None = "aac", video: bool = True
) -> None:
    """A clip as a user would upload it: H.264 (and AAC or Opus) in MP4 or Matroska."""
    with av.open(str(path), "w") as container:
        vstream: VideoStream | None = None
        if video:
            vstream = cast(VideoStream, container.add_stream("libx264", rate=spec.fps))
            vstream.width, vstream.height, vstream.pix_fmt = spec.width, spec.height, "yuv420p"
        astream: AudioStream | None = None
        resampler = None
        if audio_codec is not None:
            name = {"aac": "aac", "opus": "libopus"}[audio_codec]
            astream = cast(AudioStream, container.add_stream(name, rate=48_000))
            astream.layout = "stereo"
        for index in range(frames):
            if vstream is not None:
                frame = video_frame(spec, index)
                # same timeline as the tone (frame 0 at start_pts, 1 s)
                frame.pts = index + spec.start_pts * spec.fps // 90_000
                frame.time_base = Fraction(1, spec.fps)
                container.mux(vstream.encode(frame))
            if astream is not None:
                ctx = astream.codec_context
                if resampler is None:
                    resampler = av.AudioResampler(
                        format=ctx.format, layout=ctx.layout, rate=48_000, frame_size=ctx.frame_size
                    )
                start = spec.samples_before(index)
                chunk = audio_frame(spec, start, spec.samples_before(index + 1) - start)
                for part in resampler.resample(chunk):
                    container.mux(astream.encode(part))
        if vstream is not None:
            container.mux(vstream.encode(None))
        if astream is not None and resampler is not None:
            for part in resampler.resample(None):
                container.mux(astream.encode(part))
            container.mux(astream.encode(None))


async def play(path: Path, **changes: object) -> tuple[list, SentMessages]:  # type: ignore[type-arg]
    spec = ring_spec(slots=2 * FRAMES)  # the whole clip fits: read it once the stream ended
    sent = SentMessages()
    async with owned_ring(spec) as ring:
        config = IngestConfig(ring=spec, source_path=str(path), **changes)  # type: ignore[arg-type]
        stream = IngestStream("clip-1", config, sent.send)
        stream.start()
        try:
            await sent.wait_for(StreamState, lambda m: m.state != "processing")
            frames = await read_frames(ring, 2 * FRAMES, until_end=True, timeout=0.5)
        finally:
            await stream.stop()
        assert ring.stats().dropped == 0
    return frames, sent


async def test_clip_plays_every_frame_at_its_rate_then_ends_the_stream(tmp_path: Path) -> None:
    path = tmp_path / "upload.mp4"
    write_clip(path, SPEC, FRAMES)
    started_ns = time.monotonic_ns()
    frames, sent = await play(path, stats_interval_s=0.1)

    assert [read_counter(f.array, "yuv420p") for f in frames] == list(range(FRAMES))
    assert [f.pts for f in frames] == [SPEC.pts(i) for i in range(FRAMES)]
    eos = [bool(f.flags & FrameFlag.END_OF_STREAM) for f in frames]
    assert eos == [False] * (FRAMES - 1) + [True]
    assert frames[0].flags & FrameFlag.KEYFRAME
    # Released at the clip's own pace: never faster than real time. The pacer's clock starts
    # after started_ns, so each frame is released at least its pts offset after it (a lower
    # bound that a busy machine cannot break; 1 ms for the event loop's timer rounding).
    released = [int(f.stamps[Stage.INGEST_FIRST_BYTE]) for f in frames]
    assert all(b >= a for a, b in itertools.pairwise(released))
    for frame, at in zip(frames, released, strict=True):
        offset_ns = (frame.pts - frames[0].pts) * 1_000_000_000 // 90_000
        assert at - started_ns >= offset_ns - 1_000_000

    assert [m.state for m in sent.of(StreamState)] == ["processing", "completed"]
    assert sent.of(StreamStats)[-1].frames_in == FRAMES

    # AAC from MP4 (raw frames) leaves as ADTS frames that an AAC decoder takes as they are.
    audio = sent.of(StreamAudio)
    assert {(a.codec, a.sample_rate, a.channels) for a in audio} == {("aac", 48_000, 2)}
    assert all(is_adts(a.data) for a in audio)
    decoder = av.CodecContext.create("aac", "r")
    samples = 0
    for message in audio:
        for decoded in decoder.decode(av.Packet(message.data)):
            samples += decoded.samples
    assert samples / 48_000 == pytest.approx(FRAMES / SPEC.fps, abs=0.1)
    assert abs(audio[0].pts - frames[0].pts) < 0.05 * 90_000


async def test_opus_clip_audio_is_forwarded_as_opus(tmp_path: Path) -> None:
    path = tmp_path / "upload.mkv"
    write_clip(path, SPEC, 10, audio_codec="opus")
    frames, sent = await play(path)
    assert len(frames) == 10 and frames[-1].flags & FrameFlag.END_OF_STREAM
    audio = sent.of(StreamAudio)
    assert audio and {(a.codec, a.sample_rate, a.channels) for a in audio} == {("opus", 48_000, 2)}


async def test_audio_off_and_clip_without_video(tmp_path: Path) -> None:
    path = tmp_path / "upload.mp4"
    write_clip(path, SPEC, 5)
    frames, sent = await play(path, audio=False)
    assert len(frames) == 5 and sent.of(StreamAudio) == []

    audio_only = tmp_path / "audio.m4a"
    write_clip(audio_only, SPEC, 5, video=False)
    frames, sent = await play(audio_only)
    assert frames == []
    failed = sent.of(StreamState)[-1]
    assert failed.state == "failed" and "no video" in failed.error


async def test_unreadable_clip_fails_the_stream(tmp_path: Path) -> None:
    path = tmp_path / "garbage.mp4"
    path.write_bytes(b"not a video" * 100)
    frames, sent = await play(path)
    assert frames == []
    assert [m.state for m in sent.of(StreamState)] == ["failed"]


def test_adts_header_frames_raw_aac_for_the_adts_parser() -> None:
    payload = bytes(range(200))
    frame = adts_header(len(payload), 2, 3, 2) + payload  # AAC-LC, 48 kHz, stereo
    assert is_adts(frame)
    [(data, rate, samples)] = split_adts(frame + frame[:5])
    assert (data, rate, samples) == (frame, 48_000, 1024)
    assert ((frame[2] & 1) << 2 | frame[3] >> 6) == 2
