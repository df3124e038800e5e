"""What a workflow will allocate, checked before it runs: a node asked for a 16384x16384 image in
a batch of 4096 would take the worker down with it (or answer an allocator error as a 500).

Only what the workflow states is checked: literal ``width``/``height`` (and ``batch_size``) of any
node that makes an image of its own (``EmptyImage``, ``EmptyLatentImage``, ``ImageScale``, ...).
A frame's own size is bounded where it is decoded. An allocation that still fails while running
is reported by ``is_out_of_memory`` so callers answer it as a 503, never as a crash.
"""

from __future__ import annotations

from dataclasses import dataclass

from infer.errors import WorkflowError, WorkflowProblem
from infer.workflow.source import Prompt

BYTES_PER_PIXEL = 4 * 4  # float32, up to four channels
DEFAULT_MAX_SIDE = 4096
DEFAULT_MAX_BYTES = 4 * 1024**3


@dataclass(frozen=True)
class AllocationLimits:
    """The largest image side (``--max-image-side``) and the bytes one node may ask for
    (``--max-workflow-memory-mb``)."""

    max_side: int = DEFAULT_MAX_SIDE
    max_bytes: int = DEFAULT_MAX_BYTES


def _literal_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def check_allocation(prompt: Prompt, limits: AllocationLimits) -> None:
    """Raise ``WorkflowError`` (a 400) naming the limit when a node's stated sizes exceed it."""
    problems: list[WorkflowProblem] = []
    for node_id, node in prompt.items():
        inputs = node.get("inputs", {})
        width, height = _literal_int(inputs.get("width")), _literal_int(inputs.get("height"))
        if width is None or height is None:
            continue
        class_type = str(node.get("class_type", ""))
        if max(width, height) > limits.max_side:
            problems.append(
                WorkflowProblem(
                    "too_large",
                    f"{width}x{height} is larger than the runner's --max-image-side "
                    f"{limits.max_side}",
                    node_id,
                    class_type,
                )
            )
            continue
        batch = _literal_int(inputs.get("batch_size")) or 1
        needed = max(width, 0) * max(height, 0) * max(batch, 1) * BYTES_PER_PIXEL
        if needed > limits.max_bytes:
            problems.append(
                WorkflowProblem(
                    "too_large",
                    f"{width}x{height} in a batch of {batch} needs about {needed // 2**20} MiB, "
                    f"over the runner's --max-workflow-memory-mb {limits.max_bytes // 2**20}",
                    node_id,
                    class_type,
                )
            )
        if len(problems) >= 10:
            break
    if problems:
        raise WorkflowError(problems)


def is_out_of_memory(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what caused it) is an allocation failure (host or GPU)."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, MemoryError):
            return True
        if type(exc).__name__ == "OutOfMemoryError":
            return True
        text = str(exc)
        if isinstance(exc, RuntimeError) and (
            "DefaultCPUAllocator" in text or "out of memory" in text.lower()
        ):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False
