"""The live segmenter egress publishes with: frames in, MPEG-TS segments out, each checked with
FFmpeg's own demuxer and decoder (colour tags in the stream, no declared frame rate, audio
timestamps that never go back)."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np
import pytest

from benchmarks.media.clip import ClipSpec, ffmpeg_ts_segments, read_frame_counter, video_frame
from egress.colour import tag_colour
from egress.encode import OpusEncoder
from egress.live import LiveSegmenter
from egress.mux import MuxChunk
from ingest.decode import split_adts
from ingest.tsdemux import TsDemuxer
from ipc.colour import RANGE_FULL, Colour
from ipc.messages import StreamAudio
from tests.egress.moving_pictures import moving_yuv420p, psnr

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


def _picture(width: int, height: int, colour: Colour | None = None) -> av.VideoFrame:
    planes = np.full((height * 3 // 2, width), 128, np.uint8)
    frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
    if colour is not None:
        tag_colour(frame, colour)
    return frame


def _decode(chunks: list[MuxChunk]) -> av.container.InputContainer:
    return av.open(io.BytesIO(b"".join(c.data for c in chunks)))


@pytest.mark.parametrize(
    ("size", "colour", "want"),
    [
        ((320, 240), Colour(matrix=1, range=RANGE_FULL, primaries=1, transfer=1), (1, 2)),
        ((320, 240), None, (6, 1)),
        ((1280, 720), None, (1, 1)),
    ],
    ids=["tagged-bt709-full", "untagged-sd", "untagged-hd"],
)
def test_output_is_tagged_with_the_pictures_colour(
    size: tuple[int, int], colour: Colour | None, want: tuple[int, int]
) -> None:
    segmenter = LiveSegmenter(audio=False)
    chunks: list[MuxChunk] = []
    for i in range(3):
        frame = _picture(*size, Colour() if colour is None else colour)
        chunks += segmenter.video(frame, 90_000 + i * 1_500)
    chunks += segmenter.close()
    with _decode(chunks) as container:
        frames = list(container.decode(video=0))
        stream = container.streams.video[0]
        assert (int(frames[0].colorspace), int(frames[0].color_range)) == want
        assert [f.pts for f in frames] == [90_000, 91_500, 93_000]
        assert stream.average_rate is None or stream.average_rate != Fraction(30)


def test_output_bitrate_is_met_at_the_inputs_frame_rate_with_its_timestamps() -> None:
    # --output-bitrate: 1 Mbit/s at 512x512 from 60 fps timestamps. x264 once read the 90 kHz
    # time base as the frame rate and spent ~10 kbit/s on grey pictures.
    segmenter = LiveSegmenter(segment_seconds=1.0, audio=False, bit_rate=1_000_000, label="t")
    fps, seconds, side = 60, 3, 512
    pts = [90_000 + i * 1_500 for i in range(fps * seconds)]
    chunks: list[MuxChunk] = []
    for index, p in enumerate(pts):
        planes = moving_yuv420p(side, side, index)
        chunks += segmenter.video(av.VideoFrame.from_ndarray(planes, format="yuv420p"), p)
    chunks += segmenter.close()
    data = b"".join(c.data for c in chunks)
    with _decode(chunks) as container:
        frames = list(container.decode(video=0))
    assert [f.pts for f in frames] == pts
    bits_per_second = len(data) * 8 / seconds  # TS overhead included: a few percent
    assert 300_000 < bits_per_second < 3_000_000, bits_per_second
    quality = [psnr(f.to_ndarray(), moving_yuv420p(side, side, i)) for i, f in enumerate(frames)]
    assert min(quality[fps:]) > 30, min(quality[fps:])


def _opus_packets(count: int) -> list[tuple[int, bytes]]:
    encoder = OpusEncoder(channels=1)
    frame = av.AudioFrame.from_ndarray(
        np.zeros((1, 960 * count), np.float32), format="flt", layout="mono"
    )
    frame.sample_rate, frame.pts, frame.time_base = 48_000, 0, Fraction(1, 48_000)
    packets = encoder.encode(frame) + encoder.flush()
    return [(90_000 + (p.pts or 0) * 90_000 // 48_000, bytes(p)) for p in packets]


def test_audio_that_goes_back_is_dropped_and_counted() -> None:
    packets = _opus_packets(20)
    segmenter = LiveSegmenter()
    chunks: list[MuxChunk] = []
    for pts, data in [*packets[:10], *packets[6:]]:  # four packets sent twice, as an overlap
        segmenter.audio(
            StreamAudio(
                stream_id="s", codec="opus", pts=pts, data=data, sample_rate=48_000, channels=1
            )
        )
    for i in range(15):
        chunks += segmenter.video(_picture(64, 64), 90_000 + i * 3_000)
    chunks += segmenter.idle() + segmenter.close()
    with _decode(chunks) as container:
        audio_pts = [p.pts for p in container.demux(audio=0) if p.pts is not None]
    assert audio_pts == sorted(set(audio_pts)) and len(audio_pts) >= 10
    assert segmenter.dropped()["audio_non_increasing_pts"] == 4


def _aac_input(spec: ClipSpec, frames: int, segment_frames: int) -> list[StreamAudio]:
    """The AAC of FFmpeg-muxed segments as ingest forwards it: one ADTS frame a message, on the
    video's clock (each segment has its own encoder, so its audio starts a little early)."""
    out = []
    for segment in ffmpeg_ts_segments(
        spec, frames, segment_frames=segment_frames, audio_codec="aac"
    ):
        demuxer = TsDemuxer()
        for packet in demuxer.feed(segment.data) + demuxer.flush():
            if packet.stream.kind != "audio" or packet.pts is None:
                continue
            offset = 0
            for data, rate, samples in split_adts(packet.data):
                pts = packet.pts + offset * 90_000 // rate
                offset += samples
                out.append(
                    StreamAudio(
                        stream_id="s",
                        codec="aac",
                        pts=pts,
                        data=data,
                        sample_rate=rate,
                        channels=spec.audio_channels,
                    )
                )
    return out


def test_aac_audio_arriving_after_the_first_pictures_costs_no_picture() -> None:
    """AAC input whose audio lags the video (FFmpeg's muxer writes it behind the pictures): the
    output opens without audio, re-opens with an Opus track when the audio shows up, and every
    picture is in the output, in order, each segment decodable on its own by FFmpeg."""
    spec = ClipSpec(width=256, height=192)
    count, per_segment, lag = 45, 15, 4
    audio = _aac_input(spec, count, per_segment)
    segmenter = LiveSegmenter(segment_seconds=per_segment / spec.fps, label="t")
    chunks: list[MuxChunk] = []
    for index in range(count):
        chunks += segmenter.video(video_frame(spec, index), spec.pts(index))
        due = spec.pts(index - lag + 1) if index >= lag else None
        while audio and due is not None and audio[0].pts < due:
            segmenter.audio(audio.pop(0))
    for message in audio:
        segmenter.audio(message)
    chunks += segmenter.idle() + segmenter.close()

    assert segmenter.audio_tracks_added == 1
    pictures: list[int | None] = []
    for data in _segments(chunks).values():
        pictures += [read_frame_counter(f) for f in _video_with_ffmpeg(data)]
    assert pictures == list(range(count))
    lost = {k: v for k, v in segmenter.dropped().items() if v and not k.startswith("audio")}
    assert not lost
    with _decode(chunks) as container:
        assert container.streams.audio and container.streams.audio[0].codec_context.name == "opus"
