"""``python -m benchmarks.infer [--quick] [--output PATH]``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from benchmarks.infer.bench import format_report, run


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.infer", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations (under 30 s)")
    parser.add_argument("--output", type=Path, default=None, help="JSON report path")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(format_report(run(quick=args.quick, output=args.output)))


if __name__ == "__main__":
    main()
