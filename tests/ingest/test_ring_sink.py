"""Sizing pictures for the input ring and writing them into reserved slots."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.media.clip import ClipSpec, read_counter, video_frame
from ingest.ring_sink import RingSink, fit_size
from ingest.stats import IngestStats
from ipc.frame import FrameFlag, Stage
from ipc.messages import StreamState
from ipc.pixfmt import PixelFormat, frame_nbytes
from tests.ingest.stream_helpers import SentMessages, owned_ring, ring_spec

YUV = PixelFormat.YUV420P


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((512, 512), (512, 512)),  # fits
        ((640, 360), (640, 360)),  # other shape, fewer bytes: unchanged
        ((1024, 1024), (512, 512)),  # too large: scaled, aspect kept
        ((1280, 720), (512, 288)),
        ((513, 511), (512, 510)),  # odd 4:2:0: trimmed to even
    ],
)
def test_fit_size(size: tuple[int, int], expected: tuple[int, int]) -> None:
    capacity = frame_nbytes(YUV, 512, 512)
    assert fit_size(*size, 512, 512, capacity, YUV) == expected


def test_rgb24_ring_keeps_odd_sizes() -> None:
    capacity = frame_nbytes(PixelFormat.RGB24, 64, 48)
    assert fit_size(63, 47, 64, 48, capacity, PixelFormat.RGB24) == (63, 47)


@pytest.mark.parametrize("pixel_format", ["yuv420p", "rgb24", "nv12"])
async def test_pictures_land_in_the_ring_in_its_pixel_format(pixel_format: str) -> None:
    clip = ClipSpec(width=256, height=192)
    spec = ring_spec(pixel_format=pixel_format)
    sent = SentMessages()
    async with owned_ring(spec) as ring:
        with ring.writer() as writer, ring.reader() as reader:
            sink = RingSink("sink-1", writer, IngestStats("sink-1"), sent.send)
            for index in range(3):
                await sink.video(
                    video_frame(clip, index),
                    pts=clip.pts(index),
                    keyframe=index == 0,
                    received_ns=10,
                    decoded_ns=20,
                    end_of_stream=index == 2,
                )
            frames = [reader.read() for _ in range(3)]
    assert all(f is not None for f in frames)
    luma_format = "rgb24" if pixel_format == "rgb24" else "gray"
    counters = [read_counter(f.planes[0], luma_format) for f in frames if f is not None]
    assert counters == [0, 1, 2]
    first, last = frames[0], frames[2]
    assert first is not None and last is not None
    assert first.flags == FrameFlag.KEYFRAME and last.flags == FrameFlag.END_OF_STREAM
    assert (first.stamps[Stage.INGEST_FIRST_BYTE], first.stamps[Stage.DECODED]) == (10, 20)
    assert first.stamps[Stage.INGEST_WRITTEN] > 0
    assert [m.state for m in sent.of(StreamState)] == ["processing"]
    assert np.array_equal(first.stamps[Stage.INFER_READ :], np.zeros(7, dtype=np.int64))
