"""The segmenting MPEG-TS muxer, checked with FFmpeg's demuxer and with ours."""

from __future__ import annotations

import io

import av
import pytest

from benchmarks.media.clip import ClipSpec, ffmpeg_ts_segments, read_frame_counter
from egress.mux import (
    AUDIO_PID,
    PMT_PID,
    TS_PACKET_SIZE,
    VIDEO_PID,
    MuxChunk,
    SegmentMuxer,
    crc32_mpeg2,
)
from ingest.tsdemux import EsPacket, TsDemuxer

SPEC = ClipSpec(width=256, height=192)
OPUS_20MS = bytes([(1 << 3) | 0]) + b"\x55" * 60  # a SILK 20 ms packet (content irrelevant)


@pytest.fixture(scope="module")
def access_units() -> list[EsPacket]:
    """60 H.264 access units (two 1 s GOPs) taken from an FFmpeg-made clip."""
    segments = ffmpeg_ts_segments(SPEC, 60, segment_frames=30)
    demuxer = TsDemuxer()
    return [p for s in segments for p in demuxer.feed(s.data) + demuxer.new_segment()]


def _mux_all(muxer: SegmentMuxer, units: list[EsPacket]) -> list[list[MuxChunk]]:
    per_frame = []
    for unit in units:
        assert unit.pts is not None
        per_frame.append(muxer.write_video(unit.data, unit.pts, unit.dts, unit.keyframe))
    return per_frame


def _segments(chunks: list[MuxChunk]) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    for chunk in chunks:
        out[chunk.segment] = out.get(chunk.segment, b"") + chunk.data
    return out


def _ts_packets(data: bytes) -> list[bytes]:
    assert len(data) % TS_PACKET_SIZE == 0
    return [data[i : i + TS_PACKET_SIZE] for i in range(0, len(data), TS_PACKET_SIZE)]


def _pid(packet: bytes) -> int:
    return ((packet[1] & 0x1F) << 8) | packet[2]


def test_crc32_mpeg2_check_value() -> None:
    assert crc32_mpeg2(b"123456789") == 0x0376E6E7


def test_segments_open_with_psi_and_a_keyframe_and_decode_on_their_own(
    access_units: list[EsPacket],
) -> None:
    muxer = SegmentMuxer(segment_seconds=1.0)
    chunks = [c for frame in _mux_all(muxer, access_units) for c in frame] + muxer.close()
    segments = _segments(chunks)
    assert sorted(segments) == [0, 1]
    assert [c.segment for c in chunks if c.first] == [0, 1]
    assert [c.segment for c in chunks if c.last] == [0, 1]
    for index, data in segments.items():
        first_packets = _ts_packets(data)[:3]
        assert [_pid(p) for p in first_packets] == [0, PMT_PID, VIDEO_PID]
        with av.open(io.BytesIO(data), "r") as container:  # FFmpeg's demuxer, one segment alone
            frames = list(container.decode(video=0))
        assert len(frames) == 30
        assert frames[0].key_frame
        assert [read_frame_counter(f) for f in frames] == list(range(30 * index, 30 * index + 30))
        assert [f.pts for f in frames] == [SPEC.pts(i) for i in range(30 * index, 30 * index + 30)]


def test_each_frame_is_handed_over_whole_when_written(access_units: list[EsPacket]) -> None:
    muxer = SegmentMuxer()
    demuxer = TsDemuxer()
    for unit, chunks in zip(access_units, _mux_all(muxer, access_units), strict=True):
        data = b"".join(c.data for c in chunks)
        released = demuxer.feed(data)  # no flush: the declared PES length completes it
        assert len(released) == 1
        assert released[0].pts == unit.pts
        assert released[0].data.endswith(unit.data)
        assert released[0].data.startswith(b"\x00\x00\x00\x01\x09")  # access unit delimiter


def test_video_pes_length_is_set(access_units: list[EsPacket]) -> None:
    muxer = SegmentMuxer()
    for chunks in _mux_all(muxer, access_units):
        for packet in _ts_packets(b"".join(c.data for c in chunks)):
            if _pid(packet) == VIDEO_PID and packet[1] & 0x40:
                start = 4 + (1 + packet[4] if packet[3] & 0x20 else 0)
                assert packet[start : start + 4] == b"\x00\x00\x01\xe0"
                assert (packet[start + 4] << 8) | packet[start + 5] > 0


def test_keyframes_carry_random_access_and_pcr(access_units: list[EsPacket]) -> None:
    muxer = SegmentMuxer()
    per_frame = _mux_all(muxer, access_units)
    for unit, chunks in zip(access_units, per_frame, strict=True):
        packets = _ts_packets(b"".join(c.data for c in chunks))
        first_video = next(p for p in packets if _pid(p) == VIDEO_PID)
        assert first_video[3] & 0x20  # adaptation field present
        flags = first_video[5]
        assert bool(flags & 0x40) == unit.keyframe
        assert flags & 0x10
        pcr = (
            first_video[6] << 25
            | first_video[7] << 17
            | first_video[8] << 9
            | first_video[9] << 1
            | first_video[10] >> 7
        )
        assert pcr == unit.dts


def test_continuity_counters_run_on_across_segments(access_units: list[EsPacket]) -> None:
    muxer = SegmentMuxer(segment_seconds=0.5)
    data = b"".join(c.data for frame in _mux_all(muxer, access_units) for c in frame)
    demuxer = TsDemuxer()
    got = demuxer.feed(data) + demuxer.flush()
    assert muxer.stats.segments == 2  # the clip has a keyframe every second only
    assert demuxer.stats.cc_errors == 0
    assert len(got) == 60


def test_access_unit_too_long_for_the_length_field_is_still_delivered() -> None:
    muxer = SegmentMuxer()
    big = b"\x00\x00\x00\x01\x09\xf0" + b"\x00\x00\x01\x65" + bytes(range(256)) * 300
    (chunk,) = muxer.write_video(big, 9000, None, keyframe=True)
    assert muxer.stats.long_video_pes == 1
    demuxer = TsDemuxer()
    assert demuxer.feed(chunk.data) == []  # length 0: only the idle flush releases it
    (released,) = demuxer.flush_pending()
    assert released.data == big and released.keyframe


def test_frames_before_the_first_keyframe_are_dropped(access_units: list[EsPacket]) -> None:
    muxer = SegmentMuxer()
    unit = access_units[1]
    assert not unit.keyframe and unit.pts is not None
    assert muxer.write_video(unit.data, unit.pts, unit.dts, False) == []
    assert muxer.stats.video_dropped_before_keyframe == 1


def test_segment_due_follows_pts() -> None:
    muxer = SegmentMuxer(segment_seconds=1.0)
    assert muxer.segment_due(0)
    muxer.write_video(b"\x00\x00\x01\x65", 90_000, None, keyframe=True)
    assert not muxer.segment_due(90_000 + 89_999)
    assert muxer.segment_due(180_000)
    assert muxer.segment_due(45_000)  # timestamps went backwards: start over


def test_opus_track_is_announced_and_readable_by_ffmpeg(access_units: list[EsPacket]) -> None:
    muxer = SegmentMuxer(audio_channels=1)
    held = muxer.write_audio(OPUS_20MS, 88_200)  # before any video: held back
    assert held == []
    chunks: list[MuxChunk] = []
    for i, unit in enumerate(access_units[:30]):
        assert unit.pts is not None
        chunks += muxer.write_video(unit.data, unit.pts, unit.dts, unit.keyframe)
        chunks += muxer.write_audio(OPUS_20MS, unit.pts + 1800)
        if i == 0:
            opening = b"".join(c.data for c in chunks)
            audio_packets = [p for p in _ts_packets(opening) if _pid(p) == AUDIO_PID]
            assert len(audio_packets) == 2  # the held packet follows the keyframe at once
    chunks += muxer.close()
    data = _segments(chunks)[0]
    demuxer = TsDemuxer()
    demuxer.feed(data)
    assert demuxer.audio is not None
    assert (demuxer.audio.codec, demuxer.audio.channels) == ("opus", 1)
    with av.open(io.BytesIO(data), "r") as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "opus"
        packets = [p for p in container.demux(stream) if p.size]
    assert len(packets) == 31
    assert all(bytes(p) == OPUS_20MS for p in packets)
