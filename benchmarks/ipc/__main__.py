"""``python -m benchmarks.ipc [--quick] [--json PATH]``: frame hop ring vs Queue vs Pipe."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.ipc.bench import Case, Config, run
from benchmarks.ipc.report import build_document, format_report

DEFAULT_JSON = Path(__file__).resolve().parent.parent / "results" / "ipc.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ipc",
        description="Frame hop between two processes: shared-memory ring (copy-out and "
        "zero-copy view), multiprocessing.Queue and Pipe.send_bytes, at 512x512 and 1280x720, "
        "rgb24 and yuv420p, flooded and paced at 30 fps.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="few frames per case (CI smoke run, under 30 s)"
    )
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help=f"results file (default {DEFAULT_JSON})"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    config = Config.quick() if args.quick else Config.full()

    def progress(case: Case, samples: dict[str, Any]) -> None:
        status = f"error: {samples['error']}" if samples.get("error") else "ok"
        print(f"  {case.label}: {status}", file=sys.stderr, flush=True)

    started = time.time()
    began = time.monotonic()
    raw = run(config, progress=progress)
    document = build_document(config, raw, started, time.monotonic() - began, args.quick)
    print(format_report(document))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"\nresults written to {args.json}")
    return 1 if any(case.get("error") for case in document["cases"]) else 0


if __name__ == "__main__":
    sys.exit(main())
