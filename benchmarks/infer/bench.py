"""Per-frame overhead of the inference engines at 512x512, against plain torch in the same run.

Cases: ``passthrough`` (frame input straight to frame output) and ``invert`` (``ImageInvert``).
Each iteration times plain torch, the built-in engine and (when importable) real ComfyUI back
to back on the same input, so all three see the same machine state. Two levels:

- ``engine``: a ``[1, 512, 512, 3]`` float tensor on the device in, a tensor out;
- ``frame``: a uint8 rgb24 frame in, a uint8 frame out (conversion included): plain torch does
  the same conversion inline, the engines go through ``WorkflowRunner.process``.

Then the built-in engine on batches of 1, 4 and 8 frames (per-frame time and frames/s).
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from infer.engine.base import Engine, default_device
from infer.engine.builtin import BuiltinEngine
from infer.engine.select import comfyui_importable
from infer.workflow_runner import WorkflowRunner

SIZE = 512
TARGET_OVERHEAD_MS = 0.2

WORKFLOWS: dict[str, dict[str, Any]] = {
    "passthrough": {
        "1": {"class_type": "LoadTensor", "inputs": {}},
        "2": {"class_type": "SaveTensor", "inputs": {"images": ["1", 0]}},
    },
    "invert": {
        "1": {"class_type": "LoadTensor", "inputs": {}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveTensor", "inputs": {"images": ["2", 0]}},
    },
}


def _summary(samples_ns: list[int], frames_per_sample: int = 1) -> dict[str, float]:
    ms = sorted(s / 1e6 / frames_per_sample for s in samples_ns)
    total_s = sum(samples_ns) / 1e9
    return {
        "p50_ms": round(statistics.median(ms), 4),
        "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 4),
        "mean_ms": round(statistics.fmean(ms), 4),
        "fps": round(len(samples_ns) * frames_per_sample / total_s, 1),
        "samples": len(samples_ns),
    }


def _timer(device: torch.device) -> Callable[[Callable[[], Any]], int]:
    def timed(fn: Callable[[], Any]) -> int:
        start = time.perf_counter_ns()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter_ns() - start

    return timed


def _plain_engine(case: str, x: torch.Tensor) -> Callable[[], Any]:
    if case == "passthrough":
        return lambda: x
    return lambda: 1.0 - x


def _plain_frame(case: str, frame: np.ndarray, device: torch.device) -> Callable[[], Any]:
    def run() -> np.ndarray:
        images = torch.from_numpy(frame).to(device).unsqueeze(0).div(255.0)
        if case == "invert":
            images = 1.0 - images
        out = images.mul(255.0).add_(0.5).clamp_(0.0, 255.0).to(torch.uint8)
        return out[0].cpu().numpy()

    return run


def _interleaved(
    runners: dict[str, Callable[[], Any]],
    iterations: int,
    warmup: int,
    timed: Callable[..., int],
    block: int = 20,
) -> dict[str, list[int]]:
    """Alternate the runners in blocks of ``block`` iterations until each has ``iterations``
    samples: they share the machine's state over the run, while each block lets the allocator
    settle on that runner's buffer sizes (frame-sized buffers otherwise churn mmap/munmap)."""
    samples: dict[str, list[int]] = {name: [] for name in runners}
    for fn in runners.values():
        for _ in range(warmup):
            timed(fn)
    while any(len(s) < iterations for s in samples.values()):
        for name, fn in runners.items():
            for _ in range(min(block, iterations - len(samples[name]))):
                samples[name].append(timed(fn))
    return samples


def _with_overhead(results: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    base = results["plain_torch"]["p50_ms"]
    for name, summary in results.items():
        if name != "plain_torch":
            summary["overhead_p50_ms"] = round(summary["p50_ms"] - base, 4)
    return results


def run(quick: bool = False, output: Path | None = None) -> dict[str, Any]:
    """Run the benchmark, write the JSON report and return it."""
    started = time.perf_counter()
    device = default_device()
    timed = _timer(device)
    iterations = 300 if quick else 2000
    comfy_iterations = 100 if quick else 500
    notes: list[str] = []

    engines: dict[str, Engine] = {"builtin": BuiltinEngine(device)}
    available, detail = comfyui_importable()
    workspace: tempfile.TemporaryDirectory[str] | None = None
    if available:
        from infer.engine.comfyui import ComfyUIEngine

        workspace = tempfile.TemporaryDirectory(prefix="bench-comfy-")
        engines["comfyui"] = ComfyUIEngine(workspace.name, device=device)
        notes.append(f"real ComfyUI run in-process ({detail})")
    else:
        notes.append(f"real ComfyUI not run: not importable in this interpreter ({detail})")

    report: dict[str, Any] = {
        "benchmark": "infer",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": quick,
        "size": f"{SIZE}x{SIZE}",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "engines": {name: e.info() for name, e in engines.items()},
        "target_overhead_ms": TARGET_OVERHEAD_MS,
        "notes": notes,
        "engine_level": {},
        "frame_level": {},
        "builtin_batches": {},
    }
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    x = torch.from_numpy(frame).to(device).unsqueeze(0).div(255.0)
    try:
        with torch.inference_mode():
            for case, workflow in WORKFLOWS.items():
                prepared = {name: e.prepare(workflow) for name, e in engines.items()}
                runners: dict[str, Callable[[], Any]] = {"plain_torch": _plain_engine(case, x)}
                for name, engine in engines.items():
                    runners[name] = functools.partial(engine.run, prepared[name], x)
                n = comfy_iterations if "comfyui" in engines else iterations
                samples = _interleaved(runners, n, warmup=20, timed=timed)
                report["engine_level"][case] = _with_overhead(
                    {name: _summary(s) for name, s in samples.items()}
                )

                pipelines = {}
                for name, engine in engines.items():
                    pipeline = WorkflowRunner(engine, f"bench-{name}", SIZE, SIZE, warmup_frames=3)
                    pipeline.start(prepared[name])
                    pipelines[name] = pipeline
                frame_runners: dict[str, Callable[[], Any]] = {
                    "plain_torch": _plain_frame(case, frame, device)
                }
                for name, pipeline in pipelines.items():
                    frame_runners[name] = functools.partial(pipeline.process, [frame])
                samples = _interleaved(frame_runners, n, warmup=10, timed=timed)
                report["frame_level"][case] = _with_overhead(
                    {name: _summary(s) for name, s in samples.items()}
                )

            builtin = engines["builtin"]
            prepared_invert = builtin.prepare(WORKFLOWS["invert"])
            for batch in (1, 4, 8):
                xb = x.expand(batch, -1, -1, -1).contiguous()
                samples = _interleaved(
                    {
                        "plain_torch": functools.partial(torch.rsub, xb, 1.0),
                        "builtin": functools.partial(builtin.run, prepared_invert, xb),
                    },
                    max(50, iterations // batch),
                    warmup=10,
                    timed=timed,
                )
                report["builtin_batches"][str(batch)] = _with_overhead(
                    {name: _summary(s, batch) for name, s in samples.items()}
                )
    finally:
        for engine in engines.values():
            engine.close()
        if workspace is not None:
            workspace.cleanup()

    overheads = [
        report[level][case]["builtin"]["overhead_p50_ms"]
        for level in ("engine_level",)
        for case in WORKFLOWS
    ]
    report["builtin_overhead_p50_ms_max"] = max(overheads)
    report["target_met"] = max(overheads) <= TARGET_OVERHEAD_MS
    report["elapsed_s"] = round(time.perf_counter() - started, 1)
    path = output or Path(__file__).resolve().parents[1] / "results" / "infer.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    report["path"] = str(path)
    return report


def format_report(report: dict[str, Any]) -> str:
    """A short human-readable table of the report."""
    lines = [
        f"infer benchmark {report['size']} on {report['device']} ({report['device_name']}), "
        f"torch {report['torch']}, {report['torch_threads']} threads, {report['elapsed_s']} s",
        *(f"  note: {n}" for n in report["notes"]),
    ]
    for level in ("engine_level", "frame_level"):
        for case, results in report[level].items():
            lines.append(f"{level} / {case}:")
            for name, s in results.items():
                extra = (
                    f"  overhead p50 {s['overhead_p50_ms']:+.4f} ms"
                    if "overhead_p50_ms" in s
                    else ""
                )
                lines.append(
                    f"  {name:12s} p50 {s['p50_ms']:8.4f} ms  p99 {s['p99_ms']:8.4f} ms  "
                    f"{s['fps']:9.1f} frames/s{extra}"
                )
    lines.append("builtin batches (invert, per frame):")
    for batch, results in report["builtin_batches"].items():
        b, p = results["builtin"], results["plain_torch"]
        lines.append(
            f"  batch {batch}: builtin p50 {b['p50_ms']:.4f} ms ({b['fps']:.1f} frames/s), "
            f"plain p50 {p['p50_ms']:.4f} ms, overhead {b['overhead_p50_ms']:+.4f} ms/frame"
        )
    lines.append(
        f"built-in overhead over plain torch (engine level, worst case p50): "
        f"{report['builtin_overhead_p50_ms_max']:.4f} ms/frame; target <= {report['target_overhead_ms']} ms: "
        f"{'met' if report['target_met'] else 'NOT met'}"
    )
    lines.append(f"written to {report['path']}")
    return "\n".join(lines)
