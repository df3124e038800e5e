"""The live segmenter egress publishes with: frames in, MPEG-TS segments out, each checked with
FFmpeg's own demuxer and decoder."""

from __future__ import annotations

import io

import av

from benchmarks.media.clip import ClipSpec, read_frame_counter, video_frame
from egress.live import LiveSegmenter
from egress.mux import MuxChunk
from ingest.tsdemux import TsDemuxer

SPEC = ClipSpec(width=256, height=192)


def _segments(chunks: list[MuxChunk]) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    for chunk in chunks:
        out[chunk.segment] = out.get(chunk.segment, b"") + chunk.data
    return out


def _video_with_ffmpeg(data: bytes) -> list[av.VideoFrame]:
    with av.open(io.BytesIO(data), "r") as container:
        return list(container.decode(video=0))


def test_segments_have_the_requested_length_and_decode_on_their_own() -> None:
    segmenter = LiveSegmenter(segment_seconds=0.5, audio=False, label="t")
    per_frame = [segmenter.video(video_frame(SPEC, i), SPEC.pts(i)) for i in range(45)]
    # Every frame's bytes are returned by the call that encoded it, not at the segment end.
    assert all(any(c.data for c in chunks) for chunks in per_frame)
    segments = _segments([c for frame in per_frame for c in frame] + segmenter.close())
    assert sorted(segments) == [0, 1, 2]
    for index, data in segments.items():
        video = _video_with_ffmpeg(data)
        first = index * 15
        assert [read_frame_counter(f) for f in video] == list(range(first, first + 15))
        assert [f.pts for f in video] == [SPEC.pts(i) for i in range(first, first + 15)]
        assert video[0].key_frame and not any(f.key_frame for f in video[1:])
    demuxer = TsDemuxer()
    demuxer.feed(segments[0])
    assert demuxer.video is not None and demuxer.video.codec == "h264"
    assert demuxer.audio is None  # no audio wanted: no track


def test_picture_size_change_restarts_the_encoder_in_a_new_segment() -> None:
    segmenter = LiveSegmenter(audio=False, label="t")
    small = ClipSpec(width=128, height=96)
    chunks: list[MuxChunk] = []
    for i in range(3):
        chunks += segmenter.video(video_frame(SPEC, i), SPEC.pts(i))
    for i in range(3, 6):
        chunks += segmenter.video(video_frame(small, i), SPEC.pts(i))
    segments = _segments(chunks + segmenter.close())
    assert sorted(segments) == [0, 1]
    assert segmenter.encoder_restarts == 1
    video = _video_with_ffmpeg(segments[1])
    assert [(f.width, f.height) for f in video] == [(128, 96)] * 3
    assert [read_frame_counter(f) for f in video] == [3, 4, 5]


def test_a_pts_that_does_not_increase_is_dropped_and_counted() -> None:
    segmenter = LiveSegmenter(audio=False, label="t")
    segmenter.video(video_frame(SPEC, 0), SPEC.pts(1))
    assert segmenter.accepted
    segmenter.video(video_frame(SPEC, 1), SPEC.pts(1))
    assert not segmenter.accepted
    assert segmenter.dropped()["non_increasing_pts"] == 1
