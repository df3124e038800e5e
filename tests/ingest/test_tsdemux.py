"""The incremental MPEG-TS demuxer against streams written by FFmpeg's muxer and by ours."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.media.camera import CameraSpec, camera_segments, retype_stream
from benchmarks.media.clip import ClipSpec, TsSegment, ffmpeg_ts_segments
from egress.mux import SegmentMuxer
from ingest.tsdemux import TS_PACKET_SIZE, EsPacket, TsDemuxer, h264_is_idr

SPEC = ClipSpec(width=256, height=192)


@pytest.fixture(scope="module")
def video_segments() -> list[TsSegment]:
    """Two 15-frame segments, video only, video PES length left at 0 (FFmpeg's default)."""
    return ffmpeg_ts_segments(SPEC, 30, segment_frames=15)


@pytest.fixture(scope="module")
def aac_segment() -> TsSegment:
    return ffmpeg_ts_segments(SPEC, 15, segment_frames=15, audio_codec="aac")[0]


@pytest.fixture(scope="module")
def opus_segment() -> TsSegment:
    return ffmpeg_ts_segments(SPEC, 15, segment_frames=15, audio_codec="opus")[0]


def _packets(data: bytes) -> list[bytes]:
    return [data[i : i + TS_PACKET_SIZE] for i in range(0, len(data), TS_PACKET_SIZE)]


def _pid(ts_packet: bytes) -> int:
    return ((ts_packet[1] & 0x1F) << 8) | ts_packet[2]


def _whole(data: bytes) -> list[EsPacket]:
    demuxer = TsDemuxer()
    return demuxer.feed(data) + demuxer.flush()


def _video(packets: list[EsPacket]) -> list[EsPacket]:
    return [p for p in packets if p.stream.kind == "video"]


def test_streams_from_the_pmt(aac_segment: TsSegment, opus_segment: TsSegment) -> None:
    demuxer = TsDemuxer()
    demuxer.feed(aac_segment.data)
    assert demuxer.video is not None and demuxer.video.codec == "h264"
    assert demuxer.audio is not None and demuxer.audio.codec == "aac"

    demuxer = TsDemuxer()
    demuxer.feed(opus_segment.data)
    assert demuxer.audio is not None and demuxer.audio.codec == "opus"
    assert demuxer.audio.channels == SPEC.audio_channels


def test_every_frame_with_its_timestamps(video_segments: list[TsSegment]) -> None:
    packets = _whole(video_segments[0].data)
    assert [p.pts for p in packets] == [SPEC.pts(i) for i in range(15)]
    assert [p.keyframe for p in packets] == [True] + [False] * 14
    assert all(h264_is_idr(p.data) == p.keyframe for p in packets)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cuts=st.lists(st.integers(min_value=0, max_value=60_000), max_size=40))
def test_chunk_boundaries_do_not_matter(aac_segment: TsSegment, cuts: list[int]) -> None:
    data = aac_segment.data
    reference = [(p.stream.pid, p.pts, p.data) for p in _whole(data)]
    demuxer = TsDemuxer()
    got: list[EsPacket] = []
    start = 0
    for cut in sorted({c % len(data) for c in cuts}):
        got += demuxer.feed(data[start:cut])
        start = cut
    got += demuxer.feed(data[start:]) + demuxer.flush()
    assert [(p.stream.pid, p.pts, p.data) for p in got] == reference


def test_unbounded_video_pes_waits_for_the_next_start_without_idle_flush(
    video_segments: list[TsSegment],
) -> None:
    chunks = video_segments[0].frame_chunks
    demuxer = TsDemuxer()
    first = demuxer.feed(chunks[0])
    assert first == []  # FFmpeg's behaviour: the frame is not known to be complete yet
    second = demuxer.feed(chunks[1])
    assert [p.pts for p in second] == [SPEC.pts(0)]


def test_idle_flush_releases_each_frame_at_once(video_segments: list[TsSegment]) -> None:
    demuxer = TsDemuxer()
    for index, chunk in enumerate(video_segments[0].frame_chunks):
        assert demuxer.feed(chunk) == []
        released = demuxer.flush_pending()
        assert [p.pts for p in released] == [SPEC.pts(index)]
        assert released[0].flushed_early
    assert demuxer.stats.pes_flushed_early == 15
    assert demuxer.stats.late_continuations == 0


def test_idle_flush_waits_for_a_packet_boundary(video_segments: list[TsSegment]) -> None:
    chunk = video_segments[0].frame_chunks[0]
    demuxer = TsDemuxer()
    demuxer.feed(chunk[:-10])
    assert demuxer.flush_pending() == []
    demuxer.feed(chunk[-10:])
    assert [p.pts for p in demuxer.flush_pending()] == [SPEC.pts(0)]


def test_declared_pes_length_releases_without_any_flush() -> None:
    muxer = SegmentMuxer()
    demuxer = TsDemuxer()
    segment = ffmpeg_ts_segments(SPEC, 5, segment_frames=5)[0]
    frames = _whole(segment.data)
    for frame in frames:
        (chunk,) = muxer.write_video(frame.data, frame.pts or 0, frame.dts, frame.keyframe)
        (released,) = demuxer.feed(chunk.data)
        assert released.pts == frame.pts and not released.flushed_early
        assert released.data.endswith(frame.data)


def test_lost_ts_packet_drops_the_damaged_frame_and_is_counted(
    video_segments: list[TsSegment],
) -> None:
    segment = video_segments[0]
    offset = sum(len(c) for c in segment.frame_chunks[:3]) // TS_PACKET_SIZE
    packets = _packets(segment.data)
    # Frame 3's chunk may open with PAT/PMT; lose a packet in the middle of its PES.
    start = next(i for i in range(offset, len(packets)) if _pid(packets[i]) == 0x100)
    victim = start + 2
    assert _pid(packets[victim + 1]) == 0x100 and not packets[victim + 1][1] & 0x40
    damaged = b"".join(packets[:victim] + packets[victim + 1 :])
    demuxer = TsDemuxer()
    got = demuxer.feed(damaged) + demuxer.flush()
    assert demuxer.stats.cc_errors == 1
    assert demuxer.stats.pes_damaged == 1
    assert [p.pts for p in got] == [SPEC.pts(i) for i in range(15) if i != 3]


def test_duplicate_ts_packet_is_ignored(video_segments: list[TsSegment]) -> None:
    packets = _packets(video_segments[0].data)
    index = next(i for i, p in enumerate(packets) if _pid(p) == 0x100 and not p[1] & 0x40)
    doubled = b"".join(packets[: index + 1] + packets[index:])
    demuxer = TsDemuxer()
    got = demuxer.feed(doubled) + demuxer.flush()
    assert demuxer.stats.cc_errors == 0
    assert [p.data for p in got] == [p.data for p in _whole(video_segments[0].data)]


def test_truncated_segment_drops_the_partial_frame_and_the_next_segment_is_intact(
    video_segments: list[TsSegment],
) -> None:
    first, second = video_segments
    cut = sum(len(c) for c in first.frame_chunks[:10]) + 1000  # mid TS packet of frame 10
    demuxer = TsDemuxer()
    got = demuxer.feed(first.data[:cut])
    got += demuxer.new_segment()
    assert demuxer.stats.pes_truncated == 1
    assert [p.pts for p in got] == [SPEC.pts(i) for i in range(10)]
    got = demuxer.feed(second.data) + demuxer.flush()
    assert [p.pts for p in got] == [SPEC.pts(i) for i in range(15, 30)]
    assert demuxer.stats.cc_errors == 0  # counters restart with the segment


def test_truncated_segment_with_declared_lengths_is_detected_on_a_packet_boundary() -> None:
    muxer = SegmentMuxer()
    frames = _whole(ffmpeg_ts_segments(SPEC, 3, segment_frames=3)[0].data)
    data = b"".join(
        c.data for f in frames for c in muxer.write_video(f.data, f.pts or 0, f.dts, f.keyframe)
    )
    cut = len(data) - 2 * TS_PACKET_SIZE  # whole TS packets, but the last PES is incomplete
    demuxer = TsDemuxer()
    got = demuxer.feed(data[:cut]) + demuxer.flush_pending() + demuxer.new_segment()
    assert [p.pts for p in got] == [SPEC.pts(0), SPEC.pts(1)]
    assert demuxer.stats.pes_truncated == 1


def test_payload_after_an_early_flush_is_counted_not_glued_on(
    video_segments: list[TsSegment],
) -> None:
    chunk = video_segments[0].frame_chunks[1]
    half = (len(chunk) // 2 // TS_PACKET_SIZE) * TS_PACKET_SIZE
    demuxer = TsDemuxer()
    demuxer.feed(video_segments[0].frame_chunks[0])
    demuxer.flush_pending()
    demuxer.feed(chunk[:half])
    early = demuxer.flush_pending()  # the input paused mid-frame: the flush is premature
    assert len(early) == 1 and early[0].pts == SPEC.pts(1)
    demuxer.feed(chunk[half:])
    assert demuxer.stats.late_continuations > 0
    demuxer.feed(video_segments[0].frame_chunks[2])
    assert [p.pts for p in demuxer.flush_pending()] == [SPEC.pts(2)]


def test_resynchronises_after_garbage(video_segments: list[TsSegment]) -> None:
    data = video_segments[0].data
    packets = _packets(data)
    garbage = bytes(range(1, 71))  # contains no 0x47
    mangled = garbage + b"".join(packets[:50]) + garbage + b"".join(packets[50:])
    demuxer = TsDemuxer()
    got = demuxer.feed(mangled) + demuxer.flush()
    assert demuxer.stats.bytes_skipped == 2 * len(garbage)
    assert [p.data for p in got] == [p.data for p in _whole(data)]


def test_audio_packets_carry_their_timestamps(aac_segment: TsSegment) -> None:
    audio = [p for p in _whole(aac_segment.data) if p.stream.kind == "audio"]
    assert len(audio) > 5
    pts = [p.pts or 0 for p in audio]
    assert all(p.pts is not None for p in audio) and pts == sorted(pts)
    assert all(p.keyframe for p in audio)
    assert all(p.data[0] == 0xFF and p.data[1] & 0xF0 == 0xF0 for p in audio)  # ADTS sync


def test_hevc_stream_and_its_keyframes() -> None:
    spec = CameraSpec(width=320, height=240, codec="libx265", audio=False, segment_seconds=0.5)
    segments = camera_segments(spec, 30)
    demuxer = TsDemuxer()
    packets = [p for s in segments for p in demuxer.feed(s) + demuxer.new_segment()]
    assert demuxer.program == ["hevc video"]
    assert len(packets) == 30
    assert [i for i, p in enumerate(packets) if p.keyframe] == [0, 15]


def test_unknown_stream_types_are_listed_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    spec = CameraSpec(width=320, height=240, segment_seconds=0.5)
    segment = retype_stream(camera_segments(spec, 15)[0], 0x1B, 0x99)
    demuxer = TsDemuxer(label="odd")
    packets = demuxer.feed(segment) + demuxer.new_segment()
    assert demuxer.video is None
    assert demuxer.program is not None and "aac audio" in demuxer.program
    assert any("unsupported stream type 0x99" in s for s in demuxer.program)
    assert all(p.stream.kind == "audio" for p in packets)
    assert "0x99" in caplog.text and "not supported" in caplog.text
