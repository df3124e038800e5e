"""Ring frames through a stream pipeline and into an output ring (real shared-memory rings)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from fractions import Fraction

import numpy as np
import pytest

from infer.engine.builtin import BuiltinEngine
from infer.ring_io import process_ring_frames, write_result
from infer.tensors import PixelConverter
from infer.workflow_runner import WorkflowRunner
from ipc.frame import FrameFlag, Stage
from ipc.ring import FrameRing, RingSpec
from ipc.shm import ring_name, sweep
from tests.infer.conftest import INVERT, chain, rgb_frame

TB = Fraction(1, 90000)

# Ring views are read-only; infer.tensors filters torch's warning about that at import, but
# pytest resets warning filters for every test.
pytestmark = pytest.mark.filterwarnings("ignore:The given NumPy array is not writable")


@pytest.fixture
def rings() -> Iterator[tuple[FrameRing, FrameRing, str]]:
    prefix = "t" + secrets.token_hex(4)
    made: list[FrameRing] = []

    def make(direction: str, fmt: str) -> FrameRing:
        spec = RingSpec(
            name=ring_name("inf", direction, prefix=prefix),
            slots=4,
            max_width=64,
            max_height=48,
            pixel_format=fmt,
        )
        ring = FrameRing.create(spec)
        made.append(ring)
        return ring

    yield make  # type: ignore[misc]
    for ring in made:
        ring.close()
        ring.unlink()
    assert sweep(prefix) == []


@pytest.mark.parametrize(("fmt", "width", "height"), [("rgb24", 32, 24), ("yuv420p", 31, 17)])
def test_frames_flow_from_ring_to_ring_with_stamps(
    rings, fmt: str, width: int, height: int
) -> None:  # type: ignore[no-untyped-def]
    engine = BuiltinEngine("cpu")
    source, sink = rings("in", fmt), rings("out", fmt)
    pipeline = WorkflowRunner(engine, "ring", width, height, fmt, warmup_frames=1)
    pipeline.start(INVERT)
    rgb = (rgb_frame(width, height) // 2 + 64).astype(np.uint8)
    converter = PixelConverter(width, height, fmt)
    pixels = converter.to_frames(PixelConverter(width, height).to_images([rgb]))[0]
    expected = converter.to_frames(1.0 - converter.to_images([pixels]))[0]
    with (
        source.writer() as w_in,
        source.reader() as r_in,
        sink.writer() as w_out,
        sink.reader() as r_out,
    ):
        planes = pixels if fmt == "rgb24" else _planes(pixels, width, height)
        w_in.write(planes, pts=3003, time_base=TB, flags=FrameFlag.KEYFRAME, stamp=Stage.DECODED)
        view = r_in.read(copy=False)
        assert view is not None and view.is_view
        (result,) = process_ring_frames([(pipeline, view)])
        assert (
            view.stamps[Stage.INFER_START] > 0
            and view.stamps[Stage.INFER_END] >= view.stamps[Stage.INFER_START]
        )
        write_result(w_out, view, result)
        view.release()
        out = r_out.read()
    assert out is not None
    assert (out.width, out.height, out.pts, out.time_base, out.flags) == (
        width,
        height,
        3003,
        TB,
        FrameFlag.KEYFRAME,
    )
    assert np.array_equal(out.data, expected.reshape(-1))
    assert (
        out.stamps[Stage.DECODED] > 0
        and out.stamps[Stage.INFER_WRITTEN] >= out.stamps[Stage.INFER_END] > 0
    )


def test_a_failing_frame_is_written_through_unchanged(rings) -> None:  # type: ignore[no-untyped-def]
    engine = BuiltinEngine("cpu")
    source, sink = rings("in", "rgb24"), rings("out", "rgb24")
    pipeline = WorkflowRunner(engine, "ring-fail", 8, 8, warmup_frames=1)
    pipeline.start(
        chain(
            (
                "ImageScale",
                {"upscale_method": "bilinear", "width": 16, "height": 16, "crop": "disabled"},
            )
        )
    )
    pipeline.resize(4, 4)  # the converter follows the new size; a stale-size frame then fails
    frame = rgb_frame(8, 8)
    with (
        source.writer() as w_in,
        source.reader() as r_in,
        sink.writer() as w_out,
        sink.reader() as r_out,
    ):
        w_in.write(frame, pts=1, time_base=TB)
        view = r_in.read(copy=False)
        assert view is not None
        (result,) = process_ring_frames([(pipeline, view)])
        assert result.failed and "rgb24 frame of 4x4 has 48 bytes, got 192" in (result.error or "")
        write_result(w_out, view, result)
        view.release()
        out = r_out.read()
    assert out is not None and np.array_equal(out.array, frame)
    assert pipeline.stats.frames_failed == 1


def _planes(packed: np.ndarray, width: int, height: int) -> tuple[np.ndarray, ...]:
    from ipc import pixfmt

    return pixfmt.plane_views(packed.reshape(-1), pixfmt.PixelFormat.YUV420P, width, height)
