"""Pixel formats a frame ring can carry: their codes, plane shapes and byte sizes.

All formats are 8 bits per sample. Planes are stored back to back without padding, in the order
FFmpeg uses (``rgb24``: one interleaved plane; ``yuv420p``: Y, U, V; ``nv12``: Y, interleaved UV).
Chroma planes of the 4:2:0 formats are rounded up for odd sizes, as FFmpeg does.

For even sizes the planar formats also have a *packed* 2-D form, ``(height * 3 // 2, width)``:
the same bytes seen as one array, which is what PyAV's ``VideoFrame.to_ndarray()`` returns and
``VideoFrame.from_ndarray()`` accepts for ``yuv420p`` and ``nv12``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache
from typing import Literal

import numpy as np

MAX_DIMENSION = 16384
"""Largest width or height accepted (16K); guards against absurd slot sizes."""


class PixelFormat(IntEnum):
    """Pixel formats by the code stored in a frame header (0 is never a valid code)."""

    RGB24 = 1
    YUV420P = 2
    NV12 = 3

    @property
    def ffmpeg_name(self) -> str:
        """The FFmpeg/PyAV name of the format, e.g. ``"yuv420p"``."""
        return self.name.lower()

    def __str__(self) -> str:
        return self.ffmpeg_name


FORMAT_NAMES: tuple[str, ...] = tuple(f.ffmpeg_name for f in PixelFormat)
"""Names accepted by :func:`parse_pixel_format`, e.g. in a ``RingSpec``."""

RingPixelFormat = Literal["rgb24", "yuv420p", "nv12"]
"""A ring's pixel format as it travels in control messages (``RingSpec.pixel_format``): msgspec
rejects any other name when a message is decoded."""


@dataclass(frozen=True)
class Plane:
    """One plane of a frame: its array shape and where it lies in the frame's bytes."""

    shape: tuple[int, ...]
    offset: int
    nbytes: int


def parse_pixel_format(value: str | int | PixelFormat) -> PixelFormat:
    """Return the format named by ``value`` (a name such as ``"rgb24"`` or a header code).

    Raises ``ValueError`` naming the accepted formats when ``value`` is unknown.
    """
    if isinstance(value, PixelFormat):
        return value
    if isinstance(value, str):
        # FFmpeg names are lower case; "RGB24" is rejected so a spec has one spelling.
        if value in FORMAT_NAMES:
            return PixelFormat[value.upper()]
        return _unknown(value)
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return PixelFormat(value)
        except ValueError:
            return _unknown(value)
    return _unknown(value)


def _unknown(value: object) -> PixelFormat:
    raise ValueError(
        f"unknown pixel format {value!r}; supported formats: {', '.join(FORMAT_NAMES)}"
    )


def check_dimensions(width: int, height: int) -> None:
    """Raise ``ValueError`` unless ``width`` and ``height`` are integers in 1..MAX_DIMENSION."""
    for label, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{label} must be an integer, got {value!r}")
        if not 1 <= value <= MAX_DIMENSION:
            raise ValueError(f"{label} must be between 1 and {MAX_DIMENSION}, got {value}")


@lru_cache(maxsize=256)
def plane_layout(fmt: PixelFormat, width: int, height: int) -> tuple[Plane, ...]:
    """The planes of a ``width`` x ``height`` frame in ``fmt``, in storage order."""
    check_dimensions(width, height)
    if fmt == PixelFormat.RGB24:
        shapes: tuple[tuple[int, ...], ...] = ((height, width, 3),)
    else:
        chroma_w, chroma_h = (width + 1) // 2, (height + 1) // 2
        if fmt == PixelFormat.YUV420P:
            shapes = ((height, width), (chroma_h, chroma_w), (chroma_h, chroma_w))
        elif fmt == PixelFormat.NV12:
            shapes = ((height, width), (chroma_h, chroma_w, 2))
        else:  # pragma: no cover - every PixelFormat member is handled above
            raise ValueError(f"no layout for {fmt!r}")
    planes = []
    offset = 0
    for shape in shapes:
        nbytes = int(np.prod(shape))
        planes.append(Plane(shape, offset, nbytes))
        offset += nbytes
    return tuple(planes)


def frame_nbytes(fmt: PixelFormat, width: int, height: int) -> int:
    """Bytes taken by one ``width`` x ``height`` frame in ``fmt``."""
    last = plane_layout(fmt, width, height)[-1]
    return last.offset + last.nbytes


def packed_shape(fmt: PixelFormat, width: int, height: int) -> tuple[int, ...] | None:
    """The single-array shape of a frame, or ``None`` when it has none (4:2:0 at odd sizes)."""
    check_dimensions(width, height)
    if fmt == PixelFormat.RGB24:
        return (height, width, 3)
    if width % 2 or height % 2:
        return None
    return (height * 3 // 2, width)


def geometry_of(fmt: PixelFormat, image: np.ndarray | Sequence[np.ndarray]) -> tuple[int, int]:
    """Return ``(width, height)`` of ``image``, given as its packed array or a sequence of planes.

    Raises ``ValueError`` when the array or planes do not have the shapes ``fmt`` requires.
    """
    if isinstance(image, np.ndarray):
        shape = image.shape
        if fmt == PixelFormat.RGB24:
            if image.ndim != 3 or shape[2] != 3:
                raise ValueError(f"an rgb24 image must have shape (height, width, 3), got {shape}")
            height, width = int(shape[0]), int(shape[1])
        else:
            if image.ndim != 2 or shape[0] % 3 or shape[1] % 2:
                raise ValueError(
                    f"a packed {fmt} image must have shape (height * 3 // 2, width) with even "
                    f"width and height, got {shape}; pass the planes for odd sizes"
                )
            height, width = int(shape[0]) * 2 // 3, int(shape[1])
        check_dimensions(width, height)
        return width, height
    planes = tuple(image)
    if not planes or not all(isinstance(p, np.ndarray) for p in planes):
        raise ValueError("image must be a numpy array or a non-empty sequence of numpy planes")
    first = planes[0]
    if first.ndim < 2:
        raise ValueError(f"the first plane must be at least 2-D, got shape {first.shape}")
    height, width = int(first.shape[0]), int(first.shape[1])
    expected = tuple(p.shape for p in plane_layout(fmt, width, height))
    got = tuple(p.shape for p in planes)
    if got != expected:
        raise ValueError(
            f"{fmt} planes for {width}x{height} must have shapes {expected}, got {got}"
        )
    return width, height


def plane_views(
    data: np.ndarray, fmt: PixelFormat, width: int, height: int
) -> tuple[np.ndarray, ...]:
    """Split ``data`` (a 1-D uint8 array holding at least one frame) into plane views."""
    views = []
    for plane in plane_layout(fmt, width, height):
        views.append(data[plane.offset : plane.offset + plane.nbytes].reshape(plane.shape))
    return tuple(views)
