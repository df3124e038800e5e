"""What the benchmark ran on: CPU, cores, Python, library versions, and the GPU when asked for."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import av


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _package(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def gpu_names() -> list[str]:
    """GPU names from ``nvidia-smi`` (empty when there is none or no driver)."""
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if done.returncode != 0:
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def machine_info(device: str) -> dict[str, Any]:
    """The machine and software the run used (GPU fields only for ``device="cuda"``)."""
    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": _package("torch"),
        "av": av.__version__,
        "ffmpeg_libs": {
            name: ".".join(str(part) for part in parts)
            for name, parts in av.library_versions.items()
            if name in ("libavcodec", "libavformat", "libavutil")
        },
        "numpy": _package("numpy"),
        "aiohttp": _package("aiohttp"),
        "comfystream_byoc": _package("comfystream-byoc"),
        "device": device,
    }
    if device == "cuda":
        info["gpus"] = gpu_names() or _torch_gpu_names()
    return info


def _torch_gpu_names() -> list[str]:
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
