"""Decoding live MPEG-TS input: frames out as soon as their bytes are in, and the damaged
cases a live trickle stream produces (late join, truncated segment, lost packets, restarts)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from benchmarks.media.clip import (
    ClipSpec,
    TsSegment,
    expected_counter,
    ffmpeg_ts_segments,
    read_counter,
    video_yuv420p,
)
from benchmarks.media.segment_decoder import SegmentStreamDecoder
from ingest.decode import Timeline, opus_packet_samples, split_adts, yuv420p_array
from ingest.decoded import DecodedAudio, DecodedVideo
from ingest.tsdemux import TS_PACKET_SIZE, ElementaryStream, EsPacket

SPEC = ClipSpec(width=256, height=192)
SEGMENT = 15


@pytest.fixture(scope="module")
def video_segments() -> list[TsSegment]:
    return ffmpeg_ts_segments(SPEC, 2 * SEGMENT, segment_frames=SEGMENT)


@pytest.fixture(scope="module")
def aac_segments() -> list[TsSegment]:
    return ffmpeg_ts_segments(SPEC, 2 * SEGMENT, segment_frames=SEGMENT, audio_codec="aac")


def _play(
    decoder: SegmentStreamDecoder, segments: list[bytes]
) -> list[DecodedVideo | DecodedAudio]:
    out: list[DecodedVideo | DecodedAudio] = []
    for data in segments:
        out += decoder.feed(data) + decoder.flush_pending() + decoder.new_segment()
    return out + decoder.close()


def _videos(frames: list[DecodedVideo | DecodedAudio]) -> list[DecodedVideo]:
    return [f for f in frames if isinstance(f, DecodedVideo)]


def _audios(frames: list[DecodedVideo | DecodedAudio]) -> list[DecodedAudio]:
    return [f for f in frames if isinstance(f, DecodedAudio)]


def _counters(frames: list[DecodedVideo]) -> list[int | None]:
    return [read_counter(f.array, "yuv420p") for f in frames if f.array is not None]


def test_each_frame_is_decoded_by_the_call_that_completes_its_bytes(
    video_segments: list[TsSegment],
) -> None:
    decoder = SegmentStreamDecoder()
    for segment in video_segments:
        for offset, chunk in enumerate(segment.frame_chunks):
            index = segment.first_frame + offset
            got = _videos(decoder.feed(chunk) + decoder.flush_pending())
            assert len(got) == 1, f"frame {index} not out when its last byte arrived"
            frame = got[0]
            assert frame.array is not None
            assert read_counter(frame.array, "yuv420p") == expected_counter(index)
            assert frame.pts == SPEC.pts(index) and frame.source_pts == SPEC.pts(index)
            assert frame.keyframe == (offset == 0)
            assert frame.array.shape == (SPEC.height * 3 // 2, SPEC.width)
            assert frame.decoded_ns >= frame.received_ns
        decoder.new_segment()
    assert decoder.stats()["demux_pes_flushed_early"] == 2 * SEGMENT


def test_video_and_aac_audio(aac_segments: list[TsSegment]) -> None:
    decoder = SegmentStreamDecoder()
    frames = _play(decoder, [s.data for s in aac_segments])
    assert _counters(_videos(frames)) == list(range(2 * SEGMENT))
    audio = _audios(frames)
    assert {a.sample_rate for a in audio} == {SPEC.audio_rate}
    assert {a.channels for a in audio} == {SPEC.audio_channels}
    seconds = sum(a.samples for a in audio) / SPEC.audio_rate
    assert seconds == pytest.approx(2 * SEGMENT / SPEC.fps, abs=0.1)
    for segment in (0, 1):  # each segment's encoder restarted, so compare within one
        pts = [a.pts for a in audio if a.segment == segment]
        assert len(pts) > 10 and pts == sorted(pts)
    # Audio starts with the video (within the AAC priming of a few ms).
    assert abs(audio[0].pts - SPEC.pts(0)) < 0.05 * 90_000


def test_opus_audio() -> None:
    segments = ffmpeg_ts_segments(SPEC, SEGMENT, segment_frames=SEGMENT, audio_codec="opus")
    decoder = SegmentStreamDecoder()
    frames = _play(decoder, [s.data for s in segments])
    audio = _audios(frames)
    assert audio and {a.sample_rate for a in audio} == {48_000}
    assert sum(a.samples for a in audio) / 48_000 == pytest.approx(SEGMENT / SPEC.fps, abs=0.05)
    tone = np.concatenate([a.frame.to_ndarray().reshape(-1) for a in audio])
    assert float(np.abs(tone).max()) > 0.1  # the tone survived, not silence
    assert _counters(_videos(frames)) == list(range(SEGMENT))


def test_joining_mid_gop_skips_to_the_next_keyframe(video_segments: list[TsSegment]) -> None:
    first, second = video_segments
    psi = first.frame_chunks[0][: 3 * TS_PACKET_SIZE]  # SDT, PAT, PMT as FFmpeg writes them
    late_join = psi + b"".join(first.frame_chunks[5:])
    decoder = SegmentStreamDecoder()
    frames = _videos(_play(decoder, [late_join, second.data]))
    assert _counters(frames) == list(range(SEGMENT, 2 * SEGMENT))
    assert decoder.stats()["video_skipped_before_keyframe"] == SEGMENT - 5


def test_truncated_segment_does_not_poison_the_decoder(video_segments: list[TsSegment]) -> None:
    first, second = video_segments
    cut = sum(len(c) for c in first.frame_chunks[:10]) + 1000  # inside frame 10
    decoder = SegmentStreamDecoder()
    frames = _videos(_play(decoder, [first.data[:cut], second.data]))
    assert _counters(frames) == list(range(10)) + list(range(SEGMENT, 2 * SEGMENT))
    stats = decoder.stats()
    assert stats["demux_pes_truncated"] == 1
    assert stats["video_errors"] == 0


def test_lost_packets_freeze_until_the_next_keyframe_instead_of_smearing(
    video_segments: list[TsSegment],
) -> None:
    first, second = video_segments
    packets = [first.data[i : i + TS_PACKET_SIZE] for i in range(0, len(first.data), 188)]
    offset = sum(len(c) for c in first.frame_chunks[:3]) // TS_PACKET_SIZE
    start = next(i for i in range(offset, len(packets)) if packets[i][1:3] == b"\x41\x00")
    damaged = b"".join(packets[: start + 2] + packets[start + 3 :])  # inside frame 3
    decoder = SegmentStreamDecoder()
    frames = _videos(_play(decoder, [damaged, second.data]))
    assert _counters(frames) == [0, 1, 2, *list(range(SEGMENT, 2 * SEGMENT))]
    stats = decoder.stats()
    assert stats["demux_cc_errors"] == 1
    assert stats["video_skipped_before_keyframe"] == SEGMENT - 4


def test_timestamp_restart_keeps_the_timeline_increasing(aac_segments: list[TsSegment]) -> None:
    # A publisher restart: the same clip again, timestamps starting over.
    decoder = SegmentStreamDecoder()
    frames = _play(decoder, [s.data for s in aac_segments + aac_segments])
    video = _videos(frames)
    assert _counters(video) == list(range(2 * SEGMENT)) * 2
    pts = [f.pts for f in video]
    assert all(b > a for a, b in itertools.pairwise(pts))
    assert [f.discontinuity for f in video] == [False] * 30 + [True] + [False] * 29
    # Resumes just after the last timestamp handed out (the audio ran a little past the video).
    assert 3000 <= pts[30] - pts[29] <= 0.1 * 90_000
    assert [f.source_pts for f in video] == [SPEC.pts(i) for i in range(30)] * 2
    assert decoder.stats()["timeline_discontinuities"] == 1
    # Audio follows the same shift: it stays with its video after the jump.
    audio = _audios(frames)
    after = [a for a in audio if a.discontinuity]
    assert len(after) == 1
    assert abs(after[0].pts - pts[30]) < 0.05 * 90_000


def test_33_bit_timestamp_wrap_is_not_a_discontinuity() -> None:
    spec = ClipSpec(width=256, height=192, start_pts=(1 << 33) - 45_000)
    segments = ffmpeg_ts_segments(spec, 30, segment_frames=SEGMENT)
    decoder = SegmentStreamDecoder()
    video = _videos(_play(decoder, [s.data for s in segments]))
    assert [f.pts for f in video] == [spec.start_pts + 3000 * i for i in range(30)]
    assert video[-1].pts > 1 << 33
    assert video[-1].source_pts == (video[-1].pts & ((1 << 33) - 1))
    assert not any(f.discontinuity for f in video)


def test_b_frames_come_out_in_presentation_order() -> None:
    segments = ffmpeg_ts_segments(SPEC, 2 * SEGMENT, segment_frames=SEGMENT, bframes=2)
    decoder = SegmentStreamDecoder()
    video = _videos(_play(decoder, [s.data for s in segments]))
    assert _counters(video) == list(range(2 * SEGMENT))
    assert [f.pts for f in video] == [SPEC.pts(i) for i in range(2 * SEGMENT)]


@pytest.mark.parametrize("pixel_format", ["rgb24", None])
def test_output_pixel_format(video_segments: list[TsSegment], pixel_format: str | None) -> None:
    decoder = SegmentStreamDecoder(pixel_format=pixel_format, audio=False)
    video = _videos(_play(decoder, [video_segments[0].data]))
    assert len(video) == SEGMENT
    if pixel_format == "rgb24":
        assert video[7].array is not None and video[7].array.shape == (192, 256, 3)
        assert read_counter(video[7].array, "rgb24") == 7
    else:
        assert all(f.array is None for f in video)
        assert video[7].frame.format.name == "yuv420p"


def test_yuv420p_array_fills_a_given_buffer() -> None:
    import av

    picture = video_yuv420p(SPEC, 42)
    frame = av.VideoFrame.from_ndarray(picture, format="yuv420p")
    out = np.zeros_like(picture)
    assert yuv420p_array(frame, out) is out
    assert np.array_equal(out, picture)


def _packet(pid: int, pts: int) -> EsPacket:
    stream = ElementaryStream(pid, 0x1B, "h264", "video")
    return EsPacket(stream, b"", pts, pts, True, 0, 0, source_pts=pts)


def test_timeline_tolerates_small_backward_steps_and_catches_big_gaps() -> None:
    timeline = Timeline(backward_tolerance=9_000, max_gap=90_000)
    steps = [1_000_000, 1_003_000, 1_000_500, 1_006_000]  # 2.5 ms back: jitter, kept as is
    mapped = []
    for value in steps:
        packet = _packet(1, value)
        timeline.map(packet)
        mapped.append((packet.pts, packet.discontinuity))
    assert mapped == [(v, False) for v in steps]
    jump = _packet(1, 1_006_000 + 5 * 90_000)  # 5 s forward: beyond max_gap
    timeline.map(jump)
    assert jump.discontinuity and jump.pts == 1_006_000 + 5_500
    assert timeline.discontinuities == 1


def test_split_adts_frames() -> None:
    def adts(payload: bytes, rate_index: int = 3) -> bytes:
        length = 7 + len(payload)
        header = bytes(
            [
                0xFF,
                0xF1,
                (1 << 6) | (rate_index << 2),
                0x40 | (length >> 11),
                (length >> 3) & 0xFF,
                ((length & 7) << 5) | 0x1F,
                0xFC,
            ]
        )
        return header + payload

    frames = split_adts(adts(b"a" * 10) + adts(b"b" * 20))
    assert [(len(f), rate, n) for f, rate, n in frames] == [(17, 48000, 1024), (27, 48000, 1024)]


@pytest.mark.parametrize(
    ("packet", "samples"),
    [
        (bytes([(1 << 3) | 0]), 960),  # SILK 20 ms, one frame
        (bytes([(15 << 3) | 1]), 1920),  # hybrid 20 ms, two frames
        (bytes([(19 << 3) | 3, 3]), 2880),  # CELT 20 ms, code 3 with three frames
        (bytes([(16 << 3) | 0]), 120),  # CELT 2.5 ms
    ],
)
def test_opus_packet_duration(packet: bytes, samples: int) -> None:
    assert opus_packet_samples(packet) == samples
