"""Workflows the infer worker runs on a ring's uint8 pixels, without floats or the engine.

On ``rgb24`` rings (inference on the CPU) a workflow made only of its frame input, a chain of
``ImageInvert`` nodes and its frame output is ``255 - x`` for an odd chain and the frame itself
for an even one: bit for bit what the float path gives (``1 - x / 255``, rounded to nearest), for
a fraction of its cost (no uint8 <-> float conversion, no engine call).
"""

from __future__ import annotations

import time

import numpy as np

from infer.run_state import FrameResult
from infer.workflow.rewrite import frame_input_ids, frame_output_ids
from infer.workflow.source import Prompt
from infer.workflow.validate import is_link
from ipc.frame import Frame, Stage

INVERT_NODE = "ImageInvert"


def invert_chain_length(prompt: Prompt) -> int | None:
    """How many ``ImageInvert`` nodes lie between the workflow's one frame input and its one
    frame output, when that chain is all the workflow holds; None otherwise."""
    inputs, outputs = frame_input_ids(prompt), frame_output_ids(prompt)
    if len(inputs) != 1 or len(outputs) != 1:
        return None
    chain = set(prompt) - {inputs[0], outputs[0]}
    if any(prompt[nid]["class_type"] != INVERT_NODE for nid in chain):
        return None
    seen: set[str] = set()
    node_id = outputs[0]
    while True:
        links = [v for v in prompt[node_id]["inputs"].values() if is_link(v)]
        if len(links) != 1 or int(links[0][1]) != 0:
            return None
        source = str(links[0][0])
        if source == inputs[0]:
            break
        if source not in chain or source in seen:
            return None
        seen.add(source)
        node_id = source
    return len(seen) if seen == chain else None


class Uint8Inverter:
    """Inverts a stream's ``rgb24`` frames into a buffer reused from frame to frame."""

    def __init__(self) -> None:
        self._buffer = np.empty(0, dtype=np.uint8)

    def __call__(self, frame: Frame) -> FrameResult:
        """``255 - pixels`` of ``frame``, stamped; valid until the next call."""
        started = time.monotonic_ns()
        source = frame.data.reshape(-1)
        if self._buffer.size < source.size:
            self._buffer = np.empty(source.size, dtype=np.uint8)
        out = self._buffer[: source.size]
        np.subtract(255, source, out=out, dtype=np.uint8)
        ended = time.monotonic_ns()
        frame.stamp(Stage.INFER_START, started)
        frame.stamp(Stage.INFER_END, ended)
        return FrameResult(
            frame=out,
            width=frame.width,
            height=frame.height,
            infer_start_ns=started,
            infer_end_ns=ended,
        )
