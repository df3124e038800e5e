"""Per-run hand-off of frames between an engine's caller and the nodes that run the workflow.

Real ComfyUI executes nodes on its own thread; the frame input/output nodes cannot be handed the
frame as an argument. Each run therefore gets a unique ``run_id`` that the engine writes into the
prompt's I/O nodes; the nodes look their ``RunSlot`` up here. Slots are created and removed by
the engine around one run, under a lock, so concurrent runs never see each other's frames (no
module-global "current frame").
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunSlot:
    """Inputs and outputs of one workflow run."""

    run_id: str
    images: Any
    """The input batch, ``[B, H, W, 3]`` float32 in [0, 1]."""
    output: Any = None
    """What the frame output node received (``None`` until it ran)."""
    texts: list[str] = field(default_factory=list)
    """Strings the text output nodes received, in execution order."""


class RunExchange:
    """Thread-safe registry of the runs in flight."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[str, RunSlot] = {}
        self._counter = itertools.count(1)

    def open(self, images: Any, *, prefix: str = "run") -> RunSlot:
        """Create the slot of a new run and return it (its ``run_id`` is unique)."""
        with self._lock:
            run_id = f"{prefix}-{next(self._counter)}"
            slot = RunSlot(run_id, images)
            self._slots[run_id] = slot
            return slot

    def get(self, run_id: str) -> RunSlot:
        """The slot of a run in flight; ``LookupError`` when there is none."""
        with self._lock:
            slot = self._slots.get(run_id)
        if slot is None:
            raise LookupError(
                f"no frame for run {run_id!r}: frame nodes only run inside an engine run"
            )
        return slot

    def close(self, run_id: str) -> None:
        """Forget a run (idempotent)."""
        with self._lock:
            self._slots.pop(run_id, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._slots)


EXCHANGE = RunExchange()
"""The process-wide exchange used by the frame nodes of both engines."""
