"""Frame objects: stage stamps, the single-array form and view release."""

from __future__ import annotations

import time
from fractions import Fraction

import numpy as np
import pytest

from ipc.frame import NUM_STAGES, Frame, FrameFlag, Stage, new_stamps
from ipc.pixfmt import PixelFormat, frame_nbytes, plane_views


def make_frame(width: int = 4, height: int = 2, release: object = None) -> Frame:
    fmt = PixelFormat.YUV420P
    data = np.arange(frame_nbytes(fmt, width, height), dtype=np.uint8)
    return Frame(
        seq=3,
        index=2,
        pts=3000,
        time_base=Fraction(1, 90000),
        width=width,
        height=height,
        pixel_format=fmt,
        flags=FrameFlag.KEYFRAME | FrameFlag.DISCONTINUITY,
        stamps=new_stamps(),
        data=data,
        planes=plane_views(data, fmt, width, height),
        release=release,  # type: ignore[arg-type]
    )


def test_stages_are_pipeline_ordered() -> None:
    assert NUM_STAGES == 10 == len(new_stamps())
    assert [s.name for s in Stage][:3] == ["INGEST_FIRST_BYTE", "DECODED", "INGEST_WRITTEN"]
    assert Stage.PUBLISHED == NUM_STAGES - 1
    assert list(Stage) == sorted(Stage)


def test_stamps_and_elapsed() -> None:
    frame = make_frame()
    assert frame.elapsed_ns(Stage.DECODED, Stage.ENCODED) is None
    frame.stamp(Stage.DECODED, 1_000)
    assert frame.elapsed_ns(Stage.DECODED, Stage.ENCODED) is None
    before = time.monotonic_ns()
    now = frame.stamp(Stage.ENCODED)
    assert before <= now <= time.monotonic_ns()
    assert frame.elapsed_ns(Stage.DECODED, Stage.ENCODED) == now - 1_000


def test_array_form() -> None:
    frame = make_frame()
    assert frame.array.shape == (3, 4)
    odd = make_frame(width=3, height=3)
    with pytest.raises(ValueError, match="3x3 yuv420p frame has no single-array form"):
        _ = odd.array


def test_release_runs_once_and_drops_the_pixels() -> None:
    calls: list[int] = []
    view = make_frame(release=lambda: calls.append(1))
    assert view.is_view
    with view as same:
        assert same is view and view.planes[0].shape == (2, 4)
    assert calls == [1] and not view.is_view
    assert view.planes == () and view.data.size == 0
    view.release()
    assert calls == [1]
    copy = make_frame()
    copy.release()  # copies own their pixels: nothing to give back
    assert copy.data.size == 12 and "frame seq=3" in repr(copy)
