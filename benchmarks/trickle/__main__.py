"""``python -m benchmarks.trickle [--quick] [--json PATH]``: trickle relay figures, then the
decode-latency figures when ``benchmarks.trickle.decode_latency`` is present."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.trickle import relay

DEFAULT_JSON = Path(__file__).resolve().parent.parent / "results" / "trickle.json"


def _pct(p: dict[str, Any]) -> str:
    if not p.get("n"):
        return "no samples"
    return f"p50 {p['p50']:.3f}  p90 {p['p90']:.3f}  p99 {p['p99']:.3f}  max {p['max']:.3f}  (n={p['n']})"


def format_relay(r: dict[str, Any]) -> str:
    lat = r["latency"]
    lines = [
        f"trickle relay ({r['event_loop']}, {r['cpus']} CPUs, {'quick' if r['quick'] else 'full'})",
        f"  latency, {lat['records']}",
        f"    trickle (pub -> server -> sub)  ms  {_pct(lat['trickle_ms'])}",
        f"    plain TCP relay baseline        ms  {_pct(lat['tcp_relay_baseline_ms'])}",
    ]
    if "p50_ratio_vs_baseline" in lat:
        lines.append(
            f"    ratio to baseline               p50 x{lat['p50_ratio_vs_baseline']}"
            f"  p99 x{lat['p99_ratio_vs_baseline']}"
        )
    lines.append("  throughput, 2 MiB segments in 64 KiB chunks, 1 publisher")
    lines.append(
        "    subs  published MB/s  segments/s  delivered MB/s (all subs)  share/sub  jumps"
    )
    for t in r["throughput"]:
        share = min(t["delivered_share_per_subscriber"])
        lines.append(
            f"    {t['subscribers']:>4}  {t['published_mb_per_s']:>14}  "
            f"{t['published_segments_per_s']:>10}  {t['delivered_mb_per_s_total']:>25}  "
            f"{share:>9}  {sum(t['subscriber_jumps']):>5}"
        )
    m = r["memory"]
    lines += [
        f"  memory, {m['channels']} channels x {m['segments_per_channel']} segments x "
        f"{m['segment_bytes'] // 1024} KiB",
        f"    payload held {m['payload_held_mb']} MiB, RSS delta {m['rss_delta_mb']} MiB "
        f"(x{m['rss_delta_over_payload']}), empty channels {m['rss_delta_empty_channels_kb']} KiB, "
        f"overhead {m['overhead_per_channel_kb']} KiB/channel",
    ]
    return "\n".join(lines)


def _flatten(prefix: str, value: Any, out: list[str]) -> None:
    if isinstance(value, dict):
        if "p50" in value and "n" in value:
            out.append(f"  {prefix}: {_pct(value)}")
            return
        for key, sub in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), sub, out)
    else:
        out.append(f"  {prefix}: {value}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.trickle", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short run (under 30 s)")
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help=f"results file (default {DEFAULT_JSON})"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    began = time.monotonic()
    document: dict[str, Any] = {"relay": relay.run(quick=args.quick)}
    print(format_relay(document["relay"]), flush=True)
    if importlib.util.find_spec("benchmarks.trickle.decode_latency") is not None:
        decode = importlib.import_module("benchmarks.trickle.decode_latency")
        document["decode_latency"] = decode.run(args.quick)
        lines: list[str] = []
        _flatten("", document["decode_latency"], lines)
        print("decode latency (benchmarks.trickle.decode_latency)\n" + "\n".join(lines))
    document["total_seconds"] = round(time.monotonic() - began, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"\nresults written to {args.json} ({document['total_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
