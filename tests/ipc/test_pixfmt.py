"""Pixel formats: names, plane shapes, byte sizes and the packed (PyAV) layout."""

from __future__ import annotations

import av
import numpy as np
import pytest

from ipc.pixfmt import (
    FORMAT_NAMES,
    PixelFormat,
    frame_nbytes,
    geometry_of,
    packed_shape,
    parse_pixel_format,
    plane_layout,
    plane_views,
)


def test_names_and_codes() -> None:
    assert FORMAT_NAMES == ("rgb24", "yuv420p", "nv12")
    for name in FORMAT_NAMES:
        fmt = parse_pixel_format(name)
        assert str(fmt) == fmt.ffmpeg_name == name
        assert parse_pixel_format(int(fmt)) is fmt
        assert parse_pixel_format(fmt) is fmt


@pytest.mark.parametrize("bad", ["rgb", "RGB24", "", "yuv444p", 0, 99, True, None, 1.0])
def test_unknown_format_is_a_clear_error(bad: object) -> None:
    with pytest.raises(ValueError, match=r"unknown pixel format .*supported formats: rgb24"):
        parse_pixel_format(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fmt", "width", "height", "shapes", "nbytes"),
    [
        (PixelFormat.RGB24, 512, 512, [(512, 512, 3)], 786432),
        (PixelFormat.RGB24, 1280, 720, [(720, 1280, 3)], 2764800),
        (PixelFormat.YUV420P, 1280, 720, [(720, 1280), (360, 640), (360, 640)], 1382400),
        (PixelFormat.YUV420P, 33, 17, [(17, 33), (9, 17), (9, 17)], 561 + 2 * 153),
        (PixelFormat.NV12, 512, 512, [(512, 512), (256, 256, 2)], 393216),
        (PixelFormat.NV12, 5, 3, [(3, 5), (2, 3, 2)], 15 + 12),
    ],
)
def test_plane_layout(
    fmt: PixelFormat, width: int, height: int, shapes: list[tuple[int, ...]], nbytes: int
) -> None:
    planes = plane_layout(fmt, width, height)
    assert [p.shape for p in planes] == shapes
    offsets = [p.offset for p in planes]
    assert offsets == [sum(p.nbytes for p in planes[:i]) for i in range(len(planes))]
    assert frame_nbytes(fmt, width, height) == nbytes


@pytest.mark.parametrize(("width", "height"), [(0, 10), (10, 0), (-1, 5), (16385, 2), (2.0, 2)])
def test_invalid_dimensions(width: object, height: object) -> None:
    with pytest.raises(ValueError, match=r"(width|height) must be"):
        plane_layout(PixelFormat.RGB24, width, height)  # type: ignore[arg-type]


def test_packed_shape_matches_pyav() -> None:
    """The single-array form is exactly what PyAV produces and accepts."""
    for name in ("yuv420p", "nv12"):
        fmt = parse_pixel_format(name)
        frame = av.VideoFrame(64, 48, name)
        array = frame.to_ndarray()
        assert packed_shape(fmt, 64, 48) == array.shape
        assert array.size == frame_nbytes(fmt, 64, 48)
        assert geometry_of(fmt, array) == (64, 48)
        rebuilt = av.VideoFrame.from_ndarray(np.zeros(array.shape, np.uint8), format=name)
        assert (rebuilt.width, rebuilt.height) == (64, 48)
    rgb = av.VideoFrame(64, 48, "rgb24").to_ndarray()
    assert packed_shape(PixelFormat.RGB24, 64, 48) == rgb.shape
    assert packed_shape(PixelFormat.YUV420P, 63, 48) is None


def test_geometry_of_arrays_and_planes() -> None:
    assert geometry_of(PixelFormat.RGB24, np.zeros((48, 64, 3), np.uint8)) == (64, 48)
    planes = [
        np.zeros((17, 33), np.uint8),
        np.zeros((9, 17), np.uint8),
        np.zeros((9, 17), np.uint8),
    ]
    assert geometry_of(PixelFormat.YUV420P, planes) == (33, 17)
    with pytest.raises(ValueError, match=r"shape \(height, width, 3\)"):
        geometry_of(PixelFormat.RGB24, np.zeros((48, 64, 4), np.uint8))
    with pytest.raises(ValueError, match="even width and height"):
        geometry_of(PixelFormat.YUV420P, np.zeros((48, 63), np.uint8))
    with pytest.raises(ValueError, match="even width and height"):
        geometry_of(PixelFormat.NV12, np.zeros((25, 64), np.uint8))
    with pytest.raises(ValueError, match=r"planes for 33x17 must have shapes"):
        geometry_of(PixelFormat.YUV420P, planes[:2])
    with pytest.raises(ValueError, match="non-empty sequence"):
        geometry_of(PixelFormat.YUV420P, [])


def test_plane_views_share_memory() -> None:
    fmt = PixelFormat.YUV420P
    data = np.arange(frame_nbytes(fmt, 4, 2), dtype=np.uint8)
    y, u, v = plane_views(data, fmt, 4, 2)
    assert y.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert u.tolist() == [[8, 9]] and v.tolist() == [[10, 11]]
    u[0, 0] = 200
    assert data[8] == 200
