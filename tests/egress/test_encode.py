"""Encoders and the frames-to-segments path, decoded back with FFmpeg's demuxer and ours."""

from __future__ import annotations

import io
import itertools
from fractions import Fraction

import av
import numpy as np
import pytest

from benchmarks.media.clip import (
    ClipSpec,
    audio_frame,
    ffmpeg_ts_segments,
    read_frame_counter,
    tone_phase_error,
    video_rgb24,
    video_yuv420p,
)
from egress.encode import OpusEncoder, SegmentEncoder, VideoEncoder
from egress.mux import MuxChunk
from ingest.decode import SegmentStreamDecoder
from ingest.media import DecodedVideo
from ingest.tsdemux import TsDemuxer, h264_is_idr

SPEC = ClipSpec(width=256, height=192)


def _segments(chunks: list[MuxChunk]) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    for chunk in chunks:
        out[chunk.segment] = out.get(chunk.segment, b"") + chunk.data
    return out


def _decode_with_ffmpeg(data: bytes) -> tuple[list[av.VideoFrame], list[av.AudioFrame], str]:
    with av.open(io.BytesIO(data), "r") as container:
        audio_codec = (
            container.streams.audio[0].codec_context.name if container.streams.audio else ""
        )
        video: list[av.VideoFrame] = []
        audio: list[av.AudioFrame] = []
        for frame in container.decode():
            if isinstance(frame, av.VideoFrame):
                video.append(frame)
            elif isinstance(frame, av.AudioFrame):
                audio.append(frame)
    return video, audio, audio_codec


def _seconds(frame: av.AudioFrame) -> float:
    assert frame.pts is not None and frame.time_base is not None
    return float(frame.pts * frame.time_base)


def test_video_encoder_keeps_timestamps_and_makes_keyframes_only_when_asked() -> None:
    encoder = VideoEncoder(SPEC.width, SPEC.height)
    time_base = Fraction(1, 30)
    packets = []
    for i in range(20):
        out = encoder.encode(
            video_yuv420p(SPEC, i), 100 + i, time_base, force_keyframe=i in (0, 12)
        )
        assert len(out) == 1  # zerolatency: the packet of this frame, now
        packets += out
    assert [p.pts for p in packets] == [(100 + i) * 3000 for i in range(20)]
    assert all(p.dts == p.pts for p in packets)  # no B-frames
    assert [i for i, p in enumerate(packets) if p.is_keyframe] == [0, 12]
    assert [i for i, p in enumerate(packets) if h264_is_idr(bytes(p))] == [0, 12]
    assert encoder.encode(video_yuv420p(SPEC, 20), 119, time_base) == []  # pts went back
    assert encoder.stats.dropped_non_increasing_pts == 1


def test_video_encoder_takes_rgb24_and_video_frames() -> None:
    encoder = VideoEncoder(SPEC.width, SPEC.height)
    decoder = av.CodecContext.create("h264", "r")
    first = encoder.encode(video_rgb24(SPEC, 5), 0, pixel_format="rgb24", force_keyframe=True)
    frame = av.VideoFrame.from_ndarray(video_rgb24(SPEC, 6), format="rgb24")
    second = encoder.encode(frame, 3000)
    decoded = [f for p in first + second for f in decoder.decode(p)]  # type: ignore[attr-defined]
    assert [read_frame_counter(f) for f in decoded] == [5, 6]
    with pytest.raises(ValueError, match="encoder is 256x192"):
        encoder.encode(np.zeros((96 * 3 // 2, 128), np.uint8), 6000)


def test_segments_have_the_requested_length_and_decode_on_their_own() -> None:
    encoder = SegmentEncoder(segment_seconds=0.5, audio=False)
    per_frame: list[list[MuxChunk]] = []
    for i in range(45):
        per_frame.append(encoder.video(video_yuv420p(SPEC, i), SPEC.pts(i)))
    # Every frame's bytes are returned by the call that encoded it, not at the segment end.
    assert all(any(c.data for c in chunks) for chunks in per_frame)
    chunks = [c for frame in per_frame for c in frame] + encoder.close()
    segments = _segments(chunks)
    assert sorted(segments) == [0, 1, 2]
    for index, data in segments.items():
        video, _, _ = _decode_with_ffmpeg(data)
        first = index * 15
        assert [read_frame_counter(f) for f in video] == list(range(first, first + 15))
        assert [f.pts for f in video] == [SPEC.pts(i) for i in range(first, first + 15)]
        assert video[0].key_frame and not any(f.key_frame for f in video[1:])


def test_picture_size_change_restarts_the_encoder_in_a_new_segment() -> None:
    encoder = SegmentEncoder(audio=False)
    small = ClipSpec(width=128, height=96)
    chunks: list[MuxChunk] = []
    for i in range(3):
        chunks += encoder.video(video_yuv420p(SPEC, i), SPEC.pts(i))
    for i in range(3, 6):
        chunks += encoder.video(video_yuv420p(small, i), SPEC.pts(i))
    chunks += encoder.close()
    segments = _segments(chunks)
    assert sorted(segments) == [0, 1]
    assert encoder.stats.encoder_restarts == 1
    video, _, _ = _decode_with_ffmpeg(segments[1])
    assert [(f.width, f.height) for f in video] == [(128, 96)] * 3
    assert [read_frame_counter(f) for f in video] == [3, 4, 5]


def test_aac_input_leaves_as_opus_in_sync_with_the_video() -> None:
    """AAC at 44.1 kHz in (FFmpeg-muxed segments), through our decoder and encoder, Opus at
    48 kHz out; a 100 Hz tone pins the audio timing to within a fraction of its period."""
    spec = ClipSpec(width=256, height=192, audio_rate=44_100, audio_channels=2, tone_hz=100.0)
    source = ffmpeg_ts_segments(spec, 60, segment_frames=30, audio_codec="aac")
    decoder = SegmentStreamDecoder()
    encoder = SegmentEncoder(audio=True, audio_channels=2)
    chunks: list[MuxChunk] = []
    for segment in source:
        frames = decoder.feed(segment.data) + decoder.flush_pending() + decoder.new_segment()
        for item in frames:
            if isinstance(item, DecodedVideo):
                chunks += encoder.video(item.array, item.pts, item.time_base)  # type: ignore[arg-type]
            else:
                chunks += encoder.audio(item.frame)
    chunks += encoder.close()
    data = b"".join(c.data for c in chunks)
    video, audio, codec = _decode_with_ffmpeg(data)
    assert codec == "opus"
    assert {f.sample_rate for f in audio} == {48_000}
    assert [read_frame_counter(f) for f in video] == list(range(60))
    assert [f.pts for f in video] == [spec.pts(i) for i in range(60)]
    # Each source segment had its own AAC encoder: priming and padding add ~50 ms apiece.
    audio_seconds = sum(f.samples for f in audio) / 48_000
    assert audio_seconds == pytest.approx(2.0, abs=0.2)
    first_audio = _seconds(audio[0])
    assert first_audio == pytest.approx(spec.pts(0) / 90_000, abs=0.05)
    # Each decoded Opus frame holds the tone where its own pts says it should be.
    tone_spec = ClipSpec(audio_rate=48_000, tone_hz=100.0)
    errors = [tone_phase_error(f.to_ndarray(), tone_spec, _seconds(f)) for f in audio[3:]]
    assert max(errors) < 0.001
    # Every segment carries audio, not only the first.
    for data in _segments(chunks).values():
        _, seg_audio, _ = _decode_with_ffmpeg(data)
        assert sum(f.samples for f in seg_audio) > 0.8 * 48_000


def test_opus_encoder_follows_a_gap_in_the_input() -> None:
    spec = ClipSpec(audio_rate=44_100)
    encoder = OpusEncoder(channels=1)
    packets = []
    for start in (0, 4410, 8820):
        packets += encoder.encode(audio_frame(spec, start, 4410))
    gap = 3 * 44_100
    for start in (gap, gap + 4410):
        packets += encoder.encode(audio_frame(spec, start, 4410))
    packets += encoder.flush()
    pts = [p.pts or 0 for p in packets]
    assert all(p.pts is not None for p in packets)
    steps = [b - a for a, b in itertools.pairwise(pts)]
    assert max(steps) > 2 * 48_000  # the gap is kept, not closed up
    assert sorted(set(steps) - {max(steps)}) == [960]


def test_demuxer_sees_h264_and_opus_in_our_segments() -> None:
    encoder = SegmentEncoder(audio=True, audio_channels=1)
    chunks: list[MuxChunk] = []
    for i in range(10):
        chunks += encoder.video(video_yuv420p(SPEC, i), SPEC.pts(i))
        start = SPEC.samples_before(i)
        chunks += encoder.audio(audio_frame(SPEC, start, SPEC.samples_before(i + 1) - start))
    chunks += encoder.close()
    demuxer = TsDemuxer()
    demuxer.feed(b"".join(c.data for c in chunks))
    assert demuxer.video is not None and demuxer.audio is not None
    assert (demuxer.video.codec, demuxer.audio.codec, demuxer.audio.channels) == ("h264", "opus", 1)
