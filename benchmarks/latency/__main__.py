"""``python -m benchmarks.latency``: frame latency of the runner against pytrickle's runner.

python -m benchmarks.latency [--streams 1,2,4,6,8] [--duration 30] [--quick]
    [--device cpu|cuda] [--infer-workers auto|N] [--json PATH] [--plot PATH] [--no-baseline]
    [--profile DIR] [--control-plane byoc|live-runner]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from benchmarks.cuda_check import REFUSAL_EXIT, NoCudaError, require_cuda
from benchmarks.latency.bench import REPO, BenchConfig, run

QUICK_DURATION_S = 3.0


def _stream_counts(text: str) -> list[int]:
    try:
        counts = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError("stream counts must be >= 1")
    return counts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.latency",
        description="N concurrent 512x512 30 fps streams through the runner (trickle in and out "
        "via the local orchestrator stand-in), glass-to-glass latency from a frame counter read "
        "back from the output pixels, with pytrickle's StreamProcessor as the baseline in the "
        "same run.",
    )
    parser.add_argument(
        "--streams",
        type=_stream_counts,
        default=[1, 2, 4, 6, 8],
        help="stream counts (default 1,2,4,6,8)",
    )
    parser.add_argument(
        "--duration", type=float, default=30.0, help="seconds of video per phase (default 30)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"CI smoke: 1 stream, {QUICK_DURATION_S:g} s per phase (about 30 s in all)",
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--engine",
        choices=("auto", "builtin", "comfyui"),
        default="auto",
        help="the runner's inference engine (default: the runner's default, auto)",
    )
    parser.add_argument(
        "--infer-workers",
        default="auto",
        help="the runner's infer worker processes: auto (its default) or a count",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=REPO / "benchmarks" / "results" / "latency.json",
        help="report file (default benchmarks/results/latency.json)",
    )
    parser.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="PNG plot of latency over time (default: the JSON path with .png)",
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip pytrickle's runner")
    parser.add_argument(
        "--drop-threshold",
        type=float,
        default=0.01,
        help="drop rate that counts as 'dropping' when comparing stream counts (default 0.01)",
    )
    parser.add_argument(
        "--latency-budget",
        type=float,
        default=100.0,
        help="glass-to-glass p99 (ms) a stream count must keep to count as handled, beside the "
        "drop rate (default 100)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="py-spy the runner's processes in each of our phases: flame graphs (svg), "
        "collapsed stacks and top frames under DIR (needs py-spy and ptrace rights)",
    )
    parser.add_argument(
        "--control-plane",
        choices=("byoc", "live-runner"),
        default="byoc",
        help="how our runner's streams start: byoc (/ai/stream/start) or live-runner (app "
        "sessions through the orchestrator's session proxy); default byoc",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    parser.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    return parser


def config_from_args(argv: list[str] | None = None) -> BenchConfig:
    args = build_parser().parse_args(argv)
    streams, duration = args.streams, args.duration
    if args.quick:
        streams, duration = [1], min(duration, QUICK_DURATION_S)
    if duration <= 0:
        raise SystemExit("--duration must be > 0")
    return BenchConfig(
        streams=streams,
        duration_s=duration,
        quick=args.quick,
        device=args.device,
        engine=args.engine,
        infer_workers=args.infer_workers,
        baseline=not args.no_baseline,
        json_path=args.json,
        plot_path=args.plot or args.json.with_suffix(".png"),
        drop_threshold=args.drop_threshold,
        latency_budget_ms=args.latency_budget,
        keep_logs=args.keep_logs,
        profile_dir=args.profile,
        progress=not args.no_progress,
        control_plane=args.control_plane,
    )


def main(argv: list[str] | None = None) -> int:
    config = config_from_args(argv)
    if config.device == "cuda":
        try:  # refuse before starting anything, not after the runner came up on the CPU
            require_cuda(sys.executable)
        except NoCudaError as exc:
            print(f"latency benchmark: {exc}", file=sys.stderr)
            return REFUSAL_EXIT
    try:
        asyncio.run(run(config))
    except KeyboardInterrupt:
        print("latency benchmark: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
