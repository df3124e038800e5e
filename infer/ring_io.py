"""The frame ring's side of inference: ring frames in, stamped, processed, written out.

A thin layer over ``infer.batching`` for the worker loop: it hands each ring ``Frame`` (a
zero-copy view or a copy) to its stream's pipeline, stamps ``INFER_START``/``INFER_END`` in the
frame's stamps, and writes results to output rings carrying pts, time base, flags and stamps.
The result is copied into the output slot once (its size is only known after the run).
"""

from __future__ import annotations

from collections.abc import Sequence

from infer.batching import process_frames
from infer.run_state import FrameResult
from infer.workflow_runner import WorkflowRunner
from ipc import pixfmt
from ipc.frame import Frame, Stage
from ipc.ring import RingWriter


def process_ring_frames(items: Sequence[tuple[WorkflowRunner, Frame]]) -> list[FrameResult]:
    """Run each ring frame through its pipeline (batched where possible); stamp the frames.

    Views are not released here: release them after ``write_result`` (a passthrough result
    may be the view's own pixels).
    """
    results = process_frames([(pipeline, frame.data) for pipeline, frame in items])
    for (_, frame), result in zip(items, results, strict=True):
        frame.stamp(Stage.INFER_START, result.infer_start_ns)
        frame.stamp(Stage.INFER_END, result.infer_end_ns)
    return results


def write_result(writer: RingWriter, frame: Frame, result: FrameResult) -> int:
    """Publish ``result`` to an output ring as the processed ``frame`` (same pts, time base,
    index, flags and stamps; ``INFER_WRITTEN`` stamped on commit). Returns its sequence number."""
    fmt = frame.pixel_format
    # A failed frame is the input itself, whatever size the stream's converter expected.
    width, height = (frame.width, frame.height) if result.failed else (result.width, result.height)
    planes = pixfmt.plane_views(result.frame.reshape(-1), fmt, width, height)
    return writer.write(
        planes,
        pts=frame.pts,
        time_base=frame.time_base,
        pixel_format=fmt,
        index=frame.index,
        flags=frame.flags,
        stamps=frame.stamps,
        stamp=Stage.INFER_WRITTEN,
    )
