"""Sizing pictures for the input ring and writing them into reserved slots."""

from __future__ import annotations

import av
import numpy as np
import pytest

from benchmarks.media.clip import ClipSpec, read_counter, video_frame
from ingest.ring_sink import RGB_INTERPOLATION, RingSink, fit_size
from ingest.stats import IngestStats
from ipc.colour import (
    COLOUR_MASK,
    MATRIX_BT709,
    MATRIX_SMPTE170M,
    RANGE_FULL,
    RANGE_LIMITED,
    Colour,
)
from ipc.frame import FrameFlag, Stage
from ipc.messages import StreamState
from ipc.pixfmt import PixelFormat, frame_nbytes
from tests import colour_patches as patches
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
    colourless = ~COLOUR_MASK
    assert first.flags & colourless == FrameFlag.KEYFRAME
    assert last.flags & colourless == FrameFlag.END_OF_STREAM
    assert (first.stamps[Stage.INGEST_FIRST_BYTE], first.stamps[Stage.DECODED]) == (10, 20)
    assert first.stamps[Stage.INGEST_WRITTEN] > 0
    assert [m.state for m in sent.of(StreamState)] == ["processing"]
    assert np.array_equal(first.stamps[Stage.INFER_READ :], np.zeros(7, dtype=np.int64))


def _tagged_patch(rgb: tuple[int, int, int], matrix: int, full_range: bool) -> av.VideoFrame:
    """A flat 64x64 yuv420p picture of ``rgb`` made with the matrix's own equations."""
    kr, kb = Colour(matrix=matrix).luma_weights
    r, g, b = (c / 255 for c in rgb)
    y = kr * r + (1 - kr - kb) * g + kb * b
    pb, pr = (b - y) / (2 * (1 - kb)), (r - y) / (2 * (1 - kr))
    scale = (0, 255, 255) if full_range else (16, 219, 224)
    planes = (
        round(scale[0] + scale[1] * y),
        round(128 + scale[2] * pb),
        round(128 + scale[2] * pr),
    )
    data = np.concatenate(
        [np.full(64 * 64, planes[0]), np.full(32 * 32, planes[1]), np.full(32 * 32, planes[2])]
    ).astype(np.uint8)
    frame = av.VideoFrame.from_ndarray(data.reshape(96, 64), format="yuv420p")
    frame.colorspace = matrix
    frame.color_range = RANGE_FULL if full_range else RANGE_LIMITED
    frame.color_primaries = matrix
    frame.color_trc = 1
    return frame


@pytest.mark.parametrize(
    ("matrix", "full_range"),
    [(MATRIX_BT709, False), (MATRIX_BT709, True), (MATRIX_SMPTE170M, False)],
)
@pytest.mark.parametrize("pixel_format", ["yuv420p", "rgb24"])
async def test_colour_description_travels_and_rgb_rings_use_it(
    pixel_format: str, matrix: int, full_range: bool
) -> None:
    spec = ring_spec(pixel_format=pixel_format, width=64, height=64)
    colour = (200, 60, 30)
    async with owned_ring(spec) as ring:
        with ring.writer() as writer, ring.reader() as reader:
            sink = RingSink("sink-2", writer, IngestStats("sink-2"), SentMessages().send)
            await sink.video(
                _tagged_patch(colour, matrix, full_range),
                pts=0,
                keyframe=True,
                received_ns=1,
                decoded_ns=2,
            )
            frame = reader.read()
    assert frame is not None
    carried = Colour.from_flags(frame.flags)
    assert (carried.matrix, carried.full_range) == (matrix, full_range)
    if pixel_format == "rgb24":
        got = frame.planes[0].reshape(64, 64, 3)[8:56, 8:56].reshape(-1, 3).mean(0)
        assert np.abs(got - colour).max() <= 2, got


@pytest.mark.parametrize("colour", patches.COLOURS_UNDER_TEST, ids=patches.colour_id)
async def test_swscale_rgb_matches_the_float_reference_on_flat_patches(colour: Colour) -> None:
    """An rgb24 ring (inference on the CPU) is filled by swscale: within 2 levels of the float
    conversion infer would otherwise run, for BT.601/BT.709 and limited/full range."""
    yuv = patches.reference_yuv420p(patches.patches_rgb(), colour)
    picture = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
    picture.colorspace, picture.color_range = colour.matrix, colour.range
    spec = ring_spec(pixel_format="rgb24", width=patches.WIDTH, height=patches.HEIGHT)
    async with owned_ring(spec) as ring:
        with ring.writer() as writer, ring.reader() as reader:
            sink = RingSink("sink-3", writer, IngestStats("sink-3"), SentMessages().send)
            await sink.video(picture, pts=0, keyframe=True, received_ns=1, decoded_ns=2)
            frame = reader.read()
    assert frame is not None and frame.pixel_format == PixelFormat.RGB24
    got = frame.planes[0].reshape(patches.HEIGHT, patches.WIDTH, 3)
    want = patches.reference_rgb(yuv, patches.WIDTH, patches.HEIGHT, colour)
    error = np.abs(patches.interiors(got) - patches.interiors(want)).max()
    assert error <= patches.TOLERANCE, error
    # And both are the colours the patches were made of, up to the 8-bit YUV rounding.
    assert np.abs(patches.interiors(got) - patches.interiors(patches.patches_rgb())).max() <= 3


@pytest.mark.parametrize("size", [(17, 13), (642, 362)])
async def test_rgb24_ring_takes_odd_sized_pictures_as_they_are(size: tuple[int, int]) -> None:
    width, height = size
    rgb = np.random.default_rng(3).integers(0, 256, (height, width, 3), dtype=np.uint8)
    picture = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    spec = ring_spec(pixel_format="rgb24", width=width, height=height)
    async with owned_ring(spec) as ring:
        with ring.writer() as writer, ring.reader() as reader:
            sink = RingSink("sink-4", writer, IngestStats("sink-4"), SentMessages().send)
            await sink.video(picture, pts=0, keyframe=True, received_ns=1, decoded_ns=2)
            frame = reader.read()
    assert frame is not None and (frame.width, frame.height) == (width, height)
    assert frame.planes[0].shape == (height, width, 3)
    want = picture.reformat(
        format="rgb24", src_colorspace=5, src_color_range=1, interpolation=RGB_INTERPOLATION
    ).to_ndarray()
    assert np.array_equal(frame.planes[0], want)
