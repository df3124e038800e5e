"""What a stream runs (``ActiveWorkflow``) and what running one frame gives (``FrameResult``),
shared by ``infer.workflow_runner`` (one stream) and ``infer.batching`` (frames of several streams)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from infer.engine.base import Engine, PreparedWorkflow
from infer.tensors import PixelConverter


@dataclass
class FrameResult:
    """The outcome of one frame."""

    frame: np.ndarray
    """Output pixels in the stream's pixel format (the input itself when ``failed``)."""
    width: int
    height: int
    """Size of ``frame`` (4:2:0 frames of odd size are 1-D, so the shape does not say it)."""
    texts: list[str] = field(default_factory=list)
    """Text outputs produced for this frame (for the data channel)."""
    failed: bool = False
    error: str | None = None
    infer_start_ns: int = 0
    """``time.monotonic_ns()`` before upload; stamp it as the frame's ``infer_start``."""
    infer_end_ns: int = 0
    """``time.monotonic_ns()`` after download; stamp it as the frame's ``infer_end``."""


@dataclass(frozen=True)
class ActiveWorkflow:
    """What a stream runs now; replaced as a whole (one reference swap) on update or resize."""

    prepared: PreparedWorkflow
    converter: PixelConverter
    output_size: tuple[int, int]
    """(width, height) of the output frames, found during warm-up."""


class BatchMember(Protocol):
    """What the batcher needs of a stream's pipeline."""

    engine: Engine

    @property
    def active(self) -> ActiveWorkflow: ...

    def record(self, result: FrameResult) -> None: ...
