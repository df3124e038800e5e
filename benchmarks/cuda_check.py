"""Is there a CUDA device to benchmark on? Asked before anything is downloaded or started.

Standard library only, so that ``make bench-gpu`` can ask with the system Python before it
builds the CUDA environment (gigabytes): ``python -m benchmarks.cuda_check [--python PATH]``
exits 0 when a device is there (and, with ``--python``, that interpreter's torch sees it), or
prints why not and exits 2.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

NVIDIA_PROC = Path("/proc/driver/nvidia/gpus")
REFUSAL_EXIT = 2


class NoCudaError(RuntimeError):
    """No usable CUDA device: the message says what is missing."""


def nvidia_devices(proc: Path = NVIDIA_PROC) -> list[str]:
    """The NVIDIA GPUs the driver lists (empty without a driver or a device)."""
    names: list[str] = []
    if proc.is_dir():
        for info in sorted(proc.glob("*/information")):
            try:
                text = info.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            model = next(
                (line.split(":", 1)[1].strip() for line in text.splitlines() if "Model" in line),
                info.parent.name,
            )
            names.append(model)
    if names:
        return names
    try:
        done = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if done.returncode != 0:
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.startswith("GPU ")]


def torch_cuda(python: str) -> tuple[bool, str]:
    """Whether ``python``'s torch sees a CUDA device, and what it said (version or error)."""
    probe = (
        "import torch; ok = torch.cuda.is_available(); "
        "print(ok, torch.__version__, torch.version.cuda, "
        "torch.cuda.get_device_name(0) if ok else '-')"
    )
    try:
        done = subprocess.run(
            [python, "-c", probe], capture_output=True, text=True, timeout=300, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"{python}: {exc}"
    if done.returncode != 0:
        return False, done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"
    fields = done.stdout.split(maxsplit=3)
    return bool(fields) and fields[0] == "True", done.stdout.strip()


def require_cuda(python: str | None = None, proc: Path = NVIDIA_PROC) -> list[str]:
    """The CUDA devices present; ``NoCudaError`` when there is none (or, with ``python``, when
    that interpreter's torch cannot use one)."""
    devices = nvidia_devices(proc)
    if not devices:
        raise NoCudaError(
            "no CUDA device on this host (no NVIDIA GPU listed by the driver or nvidia-smi): "
            "the GPU benchmark needs one; run `make bench-latency` for the CPU benchmark"
        )
    if python is not None:
        ok, said = torch_cuda(python)
        if not ok:
            raise NoCudaError(
                f"{len(devices)} NVIDIA GPU(s) present ({', '.join(devices)}) but the torch of "
                f"{python} cannot use CUDA ({said}): it needs a CUDA build of torch "
                "(`make bench-gpu` installs one into .venv-cuda)"
            )
    return devices


def main(argv: list[str] | None = None) -> int:
    """Command line: exit 0 with the devices listed, or 2 with the reason."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cuda_check", description=__doc__)
    parser.add_argument("--python", help="also check that this interpreter's torch sees CUDA")
    args = parser.parse_args(argv)
    try:
        devices = require_cuda(args.python)
    except NoCudaError as exc:
        print(f"bench-gpu: {exc}", file=sys.stderr)
        return REFUSAL_EXIT
    print("CUDA devices: " + ", ".join(devices))
    return 0


if __name__ == "__main__":
    sys.exit(main())
