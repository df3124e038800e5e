"""The live segmenter's output as FFmpeg's demuxer reads it: colour tags in the stream, no
declared frame rate, audio timestamps that never go back."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np
import pytest

from egress.colour import tag_colour
from egress.encode import OpusEncoder
from egress.live import LiveSegmenter
from egress.mux import MuxChunk
from ipc.colour import RANGE_FULL, Colour
from ipc.messages import StreamAudio


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
