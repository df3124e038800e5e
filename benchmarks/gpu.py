"""``python -m benchmarks.gpu``: the GPU run in one command (what ``make bench-gpu`` runs in
``.venv-cuda``, the environment with a CUDA build of torch).

Refuses at once (exit 2) when there is no CUDA device or this interpreter's torch cannot use it.
Otherwise runs the latency benchmark with the infer worker on cuda (``--streams``, default
1,4,8) and the ``gpu``-marked tests, and writes ``benchmarks/results/gpu/report.md`` (both
outputs, the devices, torch's version) beside the benchmark's JSON and PNG. Exits 1 when either
part failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.cuda_check import REFUSAL_EXIT, NoCudaError, require_cuda, torch_cuda

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "gpu"


def _run(command: list[str], timeout_s: float) -> tuple[int, str]:
    """Run a command in the repository, echoing its output; (exit code, output)."""
    print("$ " + " ".join(command), flush=True)
    try:
        done = subprocess.run(
            command,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout if isinstance(exc.stdout, str) else ""
        return 124, output + f"\n(timed out after {timeout_s:g} s)"
    print(done.stdout, flush=True)
    return done.returncode, done.stdout


def build_report(
    devices: list[str],
    torch_said: str,
    latency: tuple[int, str],
    gpu_tests: tuple[int, str],
    started_at: datetime,
) -> str:
    """The report file's Markdown."""
    lines = [
        "# GPU run",
        "",
        f"- started: {started_at.isoformat(timespec='seconds')}",
        f"- devices: {', '.join(devices)}",
        f"- torch (available, version, CUDA, device): {torch_said}",
        f"- latency benchmark: exit {latency[0]}",
        f"- gpu-marked tests: exit {gpu_tests[0]}",
        "",
        "## Latency benchmark (`--device cuda`)",
        "",
        "```",
        latency[1].rstrip(),
        "```",
        "",
        "## `pytest -m gpu`",
        "",
        "```",
        gpu_tests[1].rstrip()[-20000:],
        "```",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__)
    parser.add_argument("--streams", default="1,4,8", help="stream counts (default 1,4,8)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per phase")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the report goes")
    args = parser.parse_args(argv)
    started_at = datetime.now(timezone.utc)
    try:
        devices = require_cuda(sys.executable)
    except NoCudaError as exc:
        print(f"bench-gpu: {exc}", file=sys.stderr)
        return REFUSAL_EXIT
    _, torch_said = torch_cuda(sys.executable)
    args.results.mkdir(parents=True, exist_ok=True)
    latency = _run(
        [
            sys.executable,
            "-m",
            "benchmarks.latency",
            "--device",
            "cuda",
            "--streams",
            args.streams,
            "--duration",
            f"{args.duration:g}",
            "--json",
            str(args.results / "latency-cuda.json"),
            "--no-progress",
        ],
        timeout_s=3600,
    )
    gpu_tests = _run(
        [sys.executable, "-m", "pytest", "-m", "gpu and not comfyui", "-p", "no:cacheprovider"],
        timeout_s=3600,
    )
    report = args.results / "report.md"
    report.write_text(
        build_report(devices, torch_said, latency, gpu_tests, started_at), encoding="utf-8"
    )
    print(f"bench-gpu: report in {report}")
    return 0 if latency[0] == 0 and gpu_tests[0] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
