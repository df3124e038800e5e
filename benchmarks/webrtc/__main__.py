"""``python -m benchmarks.webrtc``: WebRTC latency through the runner against a bare aiortc relay.

python -m benchmarks.webrtc [--window 20] [--settle 3] [--quick] [--systems relay,runner]
    [--engine builtin] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from benchmarks.latency.report import write_json
from benchmarks.webrtc.bench import RELAY, REPO, RUNNER_EARLY, SYSTEMS, BenchConfig, run
from benchmarks.webrtc.report import format_report

QUICK_WINDOW_S = 1.5
QUICK_SETTLE_S = 0.5
QUICK_SYSTEMS = (RELAY, RUNNER_EARLY)


def _systems(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = set(names) - set(SYSTEMS)
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"systems are {', '.join(SYSTEMS)}; got {text!r}")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.webrtc",
        description="512x512 30 fps over WHIP -> invert -> WHEP through the runner (with and "
        "without its complete-frame jitter buffer) and through a bare aiortc relay, 1 then 4 "
        "viewers: glass-to-glass percentiles, first frame, drops, CPU per process.",
    )
    parser.add_argument(
        "--window", type=float, default=20.0, help="seconds measured per viewer count (20)"
    )
    parser.add_argument(
        "--settle", type=float, default=3.0, help="seconds before each window (default 3)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"CI smoke: {QUICK_WINDOW_S:g} s windows, {QUICK_SETTLE_S:g} s settling, the relay "
        "and the runner with its default jitter buffer only",
    )
    parser.add_argument(
        "--systems",
        type=_systems,
        default=None,
        help=f"comma-separated subset of {','.join(SYSTEMS)} (default: all; with --quick "
        f"{','.join(QUICK_SYSTEMS)})",
    )
    parser.add_argument(
        "--engine",
        choices=("auto", "builtin", "comfyui"),
        default="builtin",
        help="the runner's inference engine (default builtin)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=REPO / "benchmarks" / "results" / "webrtc.json",
        help="report file (default benchmarks/results/webrtc.json)",
    )
    return parser


def config_from_args(argv: list[str] | None = None) -> BenchConfig:
    args = build_parser().parse_args(argv)
    window, settle = (QUICK_WINDOW_S, QUICK_SETTLE_S) if args.quick else (args.window, args.settle)
    systems = args.systems or (QUICK_SYSTEMS if args.quick else SYSTEMS)
    return BenchConfig(
        window_s=window,
        settle_s=settle,
        systems=systems,
        engine=args.engine,
        json_path=args.json,
    )


def main(argv: list[str] | None = None) -> int:
    config = config_from_args(argv)
    report = asyncio.run(run(config))
    if config.json_path is not None:
        write_json(report, config.json_path)
    print(format_report(report))
    failed = [s["system"] for s in report["systems"] if s["error"]]
    return 1 if failed or report["shm_segments_left"] else 0


if __name__ == "__main__":
    sys.exit(main())
