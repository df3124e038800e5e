"""What compute the host offers the infer workers, found without importing torch.

The parent never loads torch (it would cost it seconds and hundreds of MiB), so GPUs are counted
from ``CUDA_VISIBLE_DEVICES`` when it is set, else from the NVIDIA driver's ``/proc`` entries.
"""

from __future__ import annotations

import os
from pathlib import Path

NVIDIA_PROC = Path("/proc/driver/nvidia/gpus")


def visible_gpus(environ: dict[str, str] | None = None, proc: Path = NVIDIA_PROC) -> list[str]:
    """The CUDA devices a worker may be given, as ``CUDA_VISIBLE_DEVICES`` entries."""
    env = os.environ if environ is None else environ
    listed = env.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        entries = [part.strip() for part in listed.split(",") if part.strip()]
        # CUDA stops at the first invalid entry; "-1" is the usual way to hide every GPU.
        valid = []
        for entry in entries:
            if entry.startswith("-"):
                break
            valid.append(entry)
        return valid
    try:
        count = sum(1 for entry in proc.iterdir() if entry.is_dir())
    except OSError:
        return []
    return [str(index) for index in range(count)]


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def infer_worker_count(requested: int, gpus: list[str], cores: int) -> int:
    """How many infer workers to start: ``requested`` when set (> 0); ``auto`` (0) is one per
    GPU, or on a host without one ``max(1, cores // 2)`` (the other half of the cores decode
    and encode)."""
    if requested > 0:
        return requested
    if gpus:
        return len(gpus)
    return max(1, cores // 2)


def infer_worker_gpus(count: int, gpus: list[str]) -> list[str]:
    """The GPU each of ``count`` infer workers uses (round robin); empty strings without GPUs."""
    if not gpus:
        return [""] * count
    return [gpus[index % len(gpus)] for index in range(count)]
