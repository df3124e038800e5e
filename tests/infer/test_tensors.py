"""Frame <-> image batch conversion, checked against PyAV's colour conversion."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from infer.tensors import PixelConverter
from ipc.colour import RANGE_FULL, RANGE_LIMITED, Colour
from ipc.pixfmt import PixelFormat, frame_nbytes
from tests.infer.conftest import rgb_frame


def _smooth_rgb(width: int, height: int) -> np.ndarray:
    """A gradient picture: chroma subsampling barely changes it, so conversions compare."""
    yy, xx = np.mgrid[0:height, 0:width]
    return np.stack(
        [
            xx * 255 // max(1, width - 1),
            yy * 255 // max(1, height - 1),
            (xx + yy) * 255 // (width + height),
        ],
        axis=-1,
    ).astype(np.uint8)


def test_rgb24_to_images_is_exactly_frame_over_255() -> None:
    frames = [rgb_frame(20, 10, seed=s) for s in range(3)]
    images = PixelConverter(20, 10).to_images(frames)
    assert images.shape == (3, 10, 20, 3) and images.dtype == torch.float32
    expected = np.stack(frames).astype(np.float32) / 255.0
    assert np.array_equal(images.numpy(), expected)


def test_rgb24_round_trip_is_exact_for_every_value() -> None:
    frame = np.arange(256 * 3, dtype=np.uint16).reshape(16, 16, 3).astype(np.uint8)
    converter = PixelConverter(16, 16)
    (back,) = converter.to_frames(converter.to_images([frame]))
    assert back.shape == (16, 16, 3) and np.array_equal(back, frame)


def test_to_frames_rounds_and_saturates() -> None:
    images = torch.tensor([[[[-0.2, 0.5 / 255, 1.6 / 255], [1.0, 1.3, 254.49 / 255]]]])
    (frame,) = PixelConverter(2, 1).to_frames(images)
    assert frame.tolist() == [[[0, 1, 2], [255, 255, 254]]]


def test_to_frames_writes_into_given_buffers_and_handles_other_sizes() -> None:
    converter = PixelConverter(8, 4)
    images = torch.rand(2, 6, 10, 3)  # the workflow changed the size
    out = [np.zeros((6, 10, 3), np.uint8), np.zeros(180, np.uint8)]
    frames = converter.to_frames(images, out=out)
    assert frames[0] is out[0] and frames[1] is out[1]
    assert np.array_equal(out[1].reshape(6, 10, 3), converter.to_frames(images[1:])[0])
    with pytest.raises(ValueError, match="does not fit"):
        converter.to_frames(images, out=[np.zeros(5, np.uint8)] * 2)


def test_other_channel_counts_become_rgb() -> None:
    converter = PixelConverter(3, 2)
    rgba = torch.rand(1, 2, 3, 4)
    grey = torch.rand(1, 2, 3, 1)
    assert np.array_equal(converter.to_frames(rgba)[0], converter.to_frames(rgba[..., :3])[0])
    (g,) = converter.to_frames(grey)
    assert np.array_equal(g[..., 0], g[..., 2])


def test_bad_frames_are_rejected() -> None:
    converter = PixelConverter(8, 4)
    with pytest.raises(ValueError, match="has 96 bytes, got 95"):
        converter.to_images([np.zeros(95, np.uint8)])
    with pytest.raises(ValueError, match="uint8"):
        converter.to_images([np.zeros((4, 8, 3), np.float32)])
    with pytest.raises(ValueError, match="unknown pixel format"):
        PixelConverter(8, 4, "bgr0")


@pytest.mark.parametrize("fmt", ["yuv420p", "nv12"])
def test_yuv_to_rgb_matches_pyav(fmt: str) -> None:
    rgb = _smooth_rgb(64, 48)
    yuv = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=fmt)
    reference = yuv.reformat(format="rgb24").to_ndarray()
    converter = PixelConverter(64, 48, fmt)
    (ours,) = PixelConverter(64, 48).to_frames(converter.to_images([yuv.to_ndarray()]))
    diff = np.abs(ours.astype(int) - reference.astype(int))
    assert diff.max() <= 4 and diff.mean() < 2.0  # swscale: fixed point, other chroma filter


@pytest.mark.parametrize("fmt", ["yuv420p", "nv12"])
def test_rgb_to_yuv_matches_pyav(fmt: str) -> None:
    rgb = _smooth_rgb(64, 48)
    reference = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=fmt).to_ndarray()
    (ours,) = PixelConverter(64, 48, fmt).to_frames(PixelConverter(64, 48).to_images([rgb]))
    assert ours.shape == reference.shape == (72, 64)
    assert np.abs(ours.astype(int) - reference.astype(int)).max() <= 2


def test_yuv_round_trip_stays_within_one_level() -> None:
    rgb = _smooth_rgb(32, 16)
    yuv = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p").to_ndarray()
    converter = PixelConverter(32, 16, "yuv420p")
    (back,) = converter.to_frames(converter.to_images([yuv]))
    assert np.abs(back.astype(int) - yuv.astype(int)).max() <= 1


def test_odd_sized_yuv420p_and_separate_planes() -> None:
    width, height = 5, 3
    assert frame_nbytes(PixelFormat.YUV420P, width, height) == 15 + 2 * 3 * 2
    y = np.full((height, width), 81, np.uint8)  # BT.601 limited-range red: Y=81 U=90 V=240
    u = np.full((2, 3), 90, np.uint8)
    v = np.full((2, 3), 240, np.uint8)
    converter = PixelConverter(width, height, "yuv420p")
    images = converter.to_images([(y, u, v)])
    assert images.shape == (1, 3, 5, 3)
    assert torch.allclose(images[0, 0, 0], torch.tensor([1.0, 0.0, 0.0]), atol=0.01)
    (back,) = converter.to_frames(images)
    assert back.shape == (27,)
    assert (
        np.abs(
            back.astype(int) - np.concatenate([y.ravel(), u.ravel(), v.ravel()]).astype(int)
        ).max()
        <= 1
    )


@pytest.mark.gpu
@pytest.mark.parametrize("fmt", ["rgb24", "yuv420p"])
def test_cuda_path_matches_the_cpu_path(fmt: str) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    width, height = 64, 32
    cpu = PixelConverter(width, height, fmt, "cpu")
    gpu = PixelConverter(width, height, fmt, "cuda")
    rgb_frames = [rgb_frame(width, height, seed=s) for s in range(4)]
    frames = (
        cpu.to_frames(PixelConverter(width, height).to_images(rgb_frames))
        if fmt != "rgb24"
        else rgb_frames
    )
    for batch in (frames[:1], frames, frames[1:3]):  # staging buffers are reused across calls
        on_gpu = gpu.to_images(batch)
        assert on_gpu.device.type == "cuda"
        assert torch.allclose(on_gpu.cpu(), cpu.to_images(batch), atol=1e-6)
        for ours, ref in zip(
            gpu.to_frames(on_gpu), cpu.to_frames(cpu.to_images(batch)), strict=True
        ):
            assert np.array_equal(ours, ref)


@pytest.mark.parametrize(
    ("matrix", "full_range", "height"),
    [(1, False, 64), (1, True, 64), (6, False, 64), (6, True, 64), (2, False, 720)],
    ids=["bt709", "bt709-full", "bt601", "bt601-full", "unspecified-hd"],
)
def test_yuv_is_read_and_written_with_the_frame_colour(
    matrix: int, full_range: bool, height: int
) -> None:
    """Checked against swscale converting with the same matrix and range (unspecified HD input
    is BT.709)."""
    width = 64
    rgb = _smooth_rgb(width, height)
    swscale_matrix = 1 if matrix in (1, 2) else 5
    yuv = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
        format="yuv420p", dst_colorspace=swscale_matrix, dst_color_range=2 if full_range else 1
    )
    planes = yuv.to_ndarray()
    colour = Colour(matrix=matrix, range=RANGE_FULL if full_range else RANGE_LIMITED)
    converter = PixelConverter(width, height, "yuv420p", colour=colour)
    images = converter.to_images([planes])
    got = images[0].numpy() * 255
    assert np.abs(got - rgb).mean() < 2.0
    (back,) = converter.to_frames(images)
    assert np.abs(back.astype(np.int16) - planes.astype(np.int16)).max() <= 2
