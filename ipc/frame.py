"""What travels through a frame ring: the frame, its flags and its per-stage timestamps."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from enum import IntEnum, IntFlag
from fractions import Fraction

import numpy as np

from ipc.pixfmt import PixelFormat, packed_shape, plane_views


class Stage(IntEnum):
    """Pipeline stages a frame is stamped at, in order; the index into ``Frame.stamps``.

    Stamps are ``time.monotonic_ns()`` values. CLOCK_MONOTONIC is one system-wide clock on Linux,
    so stamps taken by different processes compare directly. 0 means "not stamped".
    """

    INGEST_FIRST_BYTE = 0
    DECODED = 1
    INGEST_WRITTEN = 2
    INFER_READ = 3
    INFER_START = 4
    INFER_END = 5
    INFER_WRITTEN = 6
    EGRESS_READ = 7
    ENCODED = 8
    PUBLISHED = 9


NUM_STAGES = len(Stage)


class FrameFlag(IntFlag):
    """Bits of a frame header's ``flags``; bits 16 and up are free for callers."""

    NONE = 0
    KEYFRAME = 1
    """The source frame was a keyframe."""
    DISCONTINUITY = 2
    """pts does not follow the previous frame (source restarted, seek, producer restart)."""
    END_OF_STREAM = 4
    """The producer will write no more frames to this ring."""


_RELEASED = np.zeros(0, dtype=np.uint8)
_RELEASED.flags.writeable = False


def new_stamps() -> np.ndarray:
    """A zeroed stamp array (``int64[NUM_STAGES]``)."""
    return np.zeros(NUM_STAGES, dtype=np.int64)


class Frame:
    """One frame read from a ring: header fields and pixel planes.

    A frame from ``RingReader.read(copy=True)`` owns its pixels. A frame from
    ``read(copy=False)`` is a zero-copy *view*: its arrays are read-only windows on the ring's
    slot, valid until ``release()`` (or the end of a ``with frame:`` block); the producer does not
    touch that slot in the meantime. Arrays taken out of the frame and kept past the release see
    whatever the producer writes there later. ``stamps`` is always this frame's own copy and may
    be modified.
    """

    __slots__ = (
        "_planes",
        "_release",
        "_stamps",
        "data",
        "flags",
        "height",
        "index",
        "missed",
        "pixel_format",
        "pts",
        "seq",
        "time_base",
        "width",
    )

    def __init__(
        self,
        *,
        seq: int,
        index: int,
        pts: int,
        time_base: Fraction,
        width: int,
        height: int,
        pixel_format: PixelFormat,
        flags: int,
        stamps: np.ndarray | Sequence[int],
        data: np.ndarray,
        planes: tuple[np.ndarray, ...] | None = None,
        missed: int = 0,
        release: Callable[[], None] | None = None,
    ) -> None:
        self.seq = seq
        """Ring sequence number: 1 for the first frame written to the ring, +1 per frame."""
        self.index = index
        """Stream-local frame index chosen by the producer (defaults to ``seq - 1``)."""
        self.pts = pts
        self.time_base = time_base
        self.width = width
        self.height = height
        self.pixel_format = pixel_format
        self.flags = flags
        self._stamps = stamps
        self.data = data
        """All pixel bytes, planes back to back (1-D uint8)."""
        self._planes = planes
        self.missed = missed
        """Frames this reader lost (dropped by the live policy) just before this one."""
        self._release = release

    @property
    def is_view(self) -> bool:
        """Whether the pixels are a zero-copy view that is still held."""
        return self._release is not None

    @property
    def stamps(self) -> np.ndarray:
        """``int64[NUM_STAGES]`` monotonic-ns stamps indexed by ``Stage`` (0 = not stamped)."""
        stamps = self._stamps
        if not isinstance(stamps, np.ndarray):
            stamps = self._stamps = np.array(stamps, dtype=np.int64)
        return stamps

    @property
    def planes(self) -> tuple[np.ndarray, ...]:
        """One array per plane, views of ``data`` (see ``ipc.pixfmt``); ``()`` once released."""
        if self._planes is None:
            self._planes = plane_views(self.data, self.pixel_format, self.width, self.height)
        return self._planes

    @property
    def array(self) -> np.ndarray:
        """The pixels as one array: ``(h, w, 3)`` for rgb24, ``(h * 3 // 2, w)`` for 4:2:0.

        That is PyAV's ``to_ndarray`` / ``from_ndarray`` layout. Raises ``ValueError`` for 4:2:0
        frames of odd size, which only have planes.
        """
        shape = packed_shape(self.pixel_format, self.width, self.height)
        if shape is None:
            raise ValueError(
                f"a {self.width}x{self.height} {self.pixel_format} frame has no single-array form"
            )
        return self.data.reshape(shape)

    def stamp(self, stage: Stage, ns: int | None = None) -> int:
        """Record ``stage`` at ``ns`` (default: now) in this frame's stamps; return the value."""
        value = time.monotonic_ns() if ns is None else int(ns)
        self.stamps[stage] = value
        return value

    def elapsed_ns(self, start: Stage, end: Stage) -> int | None:
        """Nanoseconds from ``start`` to ``end``, or ``None`` if either is not stamped."""
        first, last = int(self.stamps[start]), int(self.stamps[end])
        if not first or not last:
            return None
        return last - first

    def release(self) -> None:
        """Give a zero-copy view's slot back to the producer (no-op for copies; idempotent).

        A released view drops its arrays (``data`` becomes empty, ``planes`` ``()``), so stale
        pixels cannot be read through the frame by mistake.
        """
        release, self._release = self._release, None
        if release is not None:
            self.data = _RELEASED
            self._planes = ()
            release()

    def __enter__(self) -> Frame:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __repr__(self) -> str:
        kind = "view" if self.is_view else "frame"
        return (
            f"<{kind} seq={self.seq} index={self.index} pts={self.pts} tb={self.time_base} "
            f"{self.width}x{self.height} {self.pixel_format} flags={self.flags:#x}>"
        )
