"""The device nodes create new tensors on (frame-independent sources such as ``EmptyImage``).

The built-in engine sets it for the duration of a run; outside a run it is the CPU, which is
also what ComfyUI's own source nodes use.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch

_CPU = torch.device("cpu")
_device: contextvars.ContextVar[torch.device | None] = contextvars.ContextVar(
    "infer_node_device", default=None
)


def node_device() -> torch.device:
    """Device for tensors a node creates from nothing."""
    return _device.get() or _CPU


@contextlib.contextmanager
def using_device(device: torch.device) -> Iterator[None]:
    """Make ``node_device()`` return ``device`` inside the block."""
    token = _device.set(device)
    try:
        yield
    finally:
        _device.reset(token)
