"""The GPU run refuses early and clearly on a host without CUDA: the check itself (with a
fake driver listing where a device must appear), ``python -m benchmarks.latency --device cuda``
and ``make bench-gpu`` as a user runs them. The CUDA path itself has not run in CI (no GPU)."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from benchmarks.cuda_check import REFUSAL_EXIT, NoCudaError, nvidia_devices, require_cuda
from benchmarks.gpu import build_report

REPO = Path(__file__).resolve().parents[2]
NO_GPU_HERE = not nvidia_devices()
needs_no_gpu = pytest.mark.skipif(not NO_GPU_HERE, reason="this host has a CUDA device")


def _fake_driver(root: Path, *models: str) -> Path:
    for k, model in enumerate(models):
        gpu = root / f"0000:0{k}:00.0"
        gpu.mkdir(parents=True)
        (gpu / "information").write_text(f"Model: \t\t {model}\nIRQ:   42\n")
    return root


def test_the_driver_listing_names_each_gpu(tmp_path: Path) -> None:
    proc = _fake_driver(tmp_path / "gpus", "NVIDIA H100", "NVIDIA L4")
    assert nvidia_devices(proc) == ["NVIDIA H100", "NVIDIA L4"]
    assert require_cuda(proc=proc) == ["NVIDIA H100", "NVIDIA L4"]


@needs_no_gpu
def test_no_device_is_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(NoCudaError, match="no CUDA device on this host"):
        require_cuda(proc=tmp_path / "absent")


def test_a_device_with_a_cpu_build_of_torch_is_refused(tmp_path: Path) -> None:
    """A GPU is listed but the interpreter's torch is a CPU build (this environment's is)."""
    proc = _fake_driver(tmp_path / "gpus", "NVIDIA H100")
    done = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    if done.stdout.strip() == "True":
        pytest.skip("this interpreter's torch can use CUDA")
    with pytest.raises(NoCudaError, match="needs a CUDA build of torch"):
        require_cuda(sys.executable, proc=proc)


@needs_no_gpu
def test_latency_benchmark_on_cuda_refuses_before_starting_anything(tmp_path: Path) -> None:
    report = tmp_path / "latency.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.latency", "--device", "cuda", "--json", str(report)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,  # hang guard: the refusal comes before any process is started
        check=False,
    )
    assert done.returncode == REFUSAL_EXIT, done.stderr
    assert "no CUDA device on this host" in done.stderr
    assert not report.exists()


@needs_no_gpu
def test_make_bench_gpu_refuses_before_building_its_environment() -> None:
    venv = REPO / ".venv-cuda"
    existed = venv.exists()
    done = subprocess.run(
        ["make", "--no-print-directory", "bench-gpu", f"PYTHON={sys.executable}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert "bench-gpu: no CUDA device on this host" in done.stderr
    assert venv.exists() == existed  # nothing was built or downloaded


def test_the_gpu_report_holds_both_outputs() -> None:
    text = build_report(
        ["NVIDIA H100"],
        "True 2.13.0 12.8 NVIDIA H100",
        (0, "Targets (512x512 invert)\n..."),
        (1, "1 failed, 3 passed"),
        datetime(2026, 1, 1, tzinfo=timezone.utc),
    )
    assert "- devices: NVIDIA H100" in text
    assert "latency benchmark: exit 0" in text and "gpu-marked tests: exit 1" in text
    assert "Targets (512x512 invert)" in text and "1 failed, 3 passed" in text
