"""``python -m benchmarks.whep [--quick]``."""

from __future__ import annotations

import argparse
import logging

from benchmarks.whep.bench import format_report, run


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.whep", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer pictures (a few seconds)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(format_report(run(quick=args.quick)))


if __name__ == "__main__":
    main()
