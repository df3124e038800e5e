"""``python -m benchmarks.soak [--quick] [--streams N] [--minutes D]``: see ``bench``.

Exit status: the full form 0 when every target passed, 1 otherwise; ``--quick`` 1 only when
the run itself broke (no output, a process or shared memory left behind)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from benchmarks.soak.bench import SoakConfig, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the 30 s smoke run (CI)")
    parser.add_argument("--streams", type=int, default=2, help="concurrent streams (default 2)")
    parser.add_argument("--minutes", type=float, help="duration (default 10; --quick: 0.5)")
    parser.add_argument("--engine", default="auto", help="runner --engine (default auto)")
    parser.add_argument("--json", type=Path, help="report path (default benchmarks/results/)")
    parser.add_argument("--plot", type=Path, help="PNG path (default benchmarks/results/)")
    parser.add_argument("--no-progress", action="store_true", help="no live progress line")
    args = parser.parse_args(argv)
    if args.streams < 1:
        parser.error("--streams must be at least 1")
    changes: dict[str, object] = {"streams": args.streams, "engine": args.engine}
    if args.minutes is not None:
        if args.minutes <= 0:
            parser.error("--minutes must be > 0")
        changes["duration_s"] = args.minutes * 60.0
    if args.json is not None:
        changes["json_path"] = args.json
    if args.plot is not None:
        changes["plot_path"] = args.plot
    if args.no_progress:
        changes["progress"] = False
    config = SoakConfig.quick_form(**changes) if args.quick else SoakConfig(**changes)
    report = asyncio.run(run(config))
    if config.quick:  # a smoke run: it must work end to end; its slopes are too short to judge
        broken = report["cleanup"]["processes_left"] or report["cleanup"]["shm_segments_left"]
        return 1 if broken or not report["latency_p50_per_bin_ms"] else 0
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
