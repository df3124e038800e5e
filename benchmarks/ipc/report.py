"""Figures, ratios, the printed table and the JSON document of the IPC benchmark."""

from __future__ import annotations

import datetime
import os
import platform
import sys
from typing import Any

import msgspec
import numpy as np

from benchmarks.ipc.bench import FORMATS, MODES, PACE_FPS, SIZES, TRANSPORTS, Case, Config

HEADLINE = (512, 512, "rgb24")
QUEUE_TARGET = 10.0  # queue p50 / ring p50, paced 512x512: at least this
MEMCPY_TARGET = 3.0  # ring / memcpy of the same bytes: at most this


def percentiles_us(values_ns: np.ndarray) -> dict[str, float] | None:
    if len(values_ns) == 0:
        return None
    p50, p95, p99 = np.percentile(values_ns, [50, 95, 99]) / 1000.0
    return {
        "p50": round(float(p50), 2),
        "p95": round(float(p95), 2),
        "p99": round(float(p99), 2),
        "max": round(float(values_ns.max()) / 1000.0, 2),
        "mean": round(float(values_ns.mean()) / 1000.0, 2),
    }


def summarize_case(case: Case, samples: dict[str, Any]) -> dict[str, Any]:
    latency = samples.get("latency_ns", np.zeros(0, np.int64))
    received = samples.get("received_ns", np.zeros(0, np.int64))
    sent = samples.get("sent", 0)
    fps = None
    if len(received) > 1:
        fps = round((len(received) - 1) / ((received[-1] - received[0]) / 1e9), 1)
    summary: dict[str, Any] = {
        "transport": case.transport,
        "width": case.width,
        "height": case.height,
        "pixel_format": case.pixel_format,
        "mode": case.mode,
        "frames_sent": sent,
        "frames_delivered": len(latency),
        "delivered_fps": fps,
        "latency_us": percentiles_us(latency),
        "error": samples.get("error"),
    }
    if case.transport.startswith("ring"):
        summary["ring_dropped"] = samples.get("ring_dropped")
        summary["write_cost_us"] = percentiles_us(samples.get("write_cost_ns", np.zeros(0)))
        summary["read_cost_us"] = percentiles_us(samples.get("read_cost_ns", np.zeros(0)))
    return summary


def _find(summaries: list[dict[str, Any]], transport: str, w: int, h: int, fmt: str, mode: str):
    for summary in summaries:
        if (summary["transport"], summary["width"], summary["height"]) == (transport, w, h) and (
            summary["pixel_format"],
            summary["mode"],
        ) == (fmt, mode):
            return summary
    return None


def _p50(summary: dict[str, Any] | None, field: str = "latency_us") -> float | None:
    if summary is None or not summary.get(field):
        return None
    return float(summary[field]["p50"])


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 2)


def compute_ratios(
    summaries: list[dict[str, Any]], memcpy: dict[str, dict[str, dict[str, float] | None]]
) -> dict[str, Any]:
    """queue/ring and ring/memcpy ratios of p50s, for every size, format and mode.

    Paced cases are compared with the paced memcpy, flood cases with the back-to-back one.
    """
    queue_over_ring = {}
    ring_over_memcpy = {}
    for w, h in SIZES:
        for fmt in FORMATS:
            for mode in MODES:
                baseline = memcpy[mode][f"{w}x{h} {fmt}"]
                copy_us = baseline["p50"] if baseline else None
                key = f"{w}x{h} {fmt} {mode}"
                queue = _p50(_find(summaries, "queue", w, h, fmt, mode))
                pipe = _p50(_find(summaries, "pipe", w, h, fmt, mode))
                ring_copy = _find(summaries, "ring-copy", w, h, fmt, mode)
                ring_view = _find(summaries, "ring-view", w, h, fmt, mode)
                queue_over_ring[key] = {
                    "queue/ring-copy": _ratio(queue, _p50(ring_copy)),
                    "queue/ring-view": _ratio(queue, _p50(ring_view)),
                    "pipe/ring-copy": _ratio(pipe, _p50(ring_copy)),
                }
                write = _p50(ring_copy, "write_cost_us")
                read = _p50(ring_copy, "read_cost_us")
                view = _p50(ring_view, "read_cost_us")
                view_write = _p50(ring_view, "write_cost_us")
                ring_over_memcpy[key] = {
                    "memcpy_p50_us": copy_us,
                    # Hop latency: producer's stamp before write -> consumer has the frame.
                    "ring-copy hop": _ratio(_p50(ring_copy), copy_us),
                    "ring-view hop": _ratio(_p50(ring_view), copy_us),
                    # CPU cost: write() + read() time per frame, without waiting or wake-up.
                    "ring-copy cost": _ratio(
                        None if write is None or read is None else write + read, copy_us
                    ),
                    "ring-view cost": _ratio(
                        None if view_write is None or view is None else view_write + view, copy_us
                    ),
                }
    return {"queue_over_ring": queue_over_ring, "ring_over_memcpy": ring_over_memcpy}


def machine_info() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu_model": model,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "machine": platform.machine(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "msgspec": msgspec.__version__,
    }


def build_document(
    config: Config, raw: dict[str, Any], started: float, elapsed_s: float, quick: bool
) -> dict[str, Any]:
    summaries = [summarize_case(case, samples) for case, samples in raw["cases"]]
    memcpy = {
        mode: {
            f"{w}x{h} {fmt}": percentiles_us(durations)
            for (w, h, fmt), durations in raw[key].items()
        }
        for mode, key in (("flood", "memcpy"), ("paced", "memcpy_paced"))
    }
    return {
        "benchmark": "ipc",
        "started": datetime.datetime.fromtimestamp(started, datetime.timezone.utc).isoformat(),
        "elapsed_s": round(elapsed_s, 1),
        "quick": quick,
        "config": {
            **config.__dict__,
            "transports": list(TRANSPORTS),
            "pace_fps": PACE_FPS,
            "latency": "consumer monotonic_ns when it has the frame minus producer monotonic_ns "
            "just before the hand-off",
        },
        "machine": machine_info(),
        "memcpy_us": memcpy,
        "cases": summaries,
        "ratios": compute_ratios(summaries, memcpy),
    }


def _fmt(value: float | None, width: int, digits: int = 1) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def format_table(document: dict[str, Any]) -> str:
    lines = [
        f"{'case':<44}{'p50 us':>10}{'p95 us':>10}{'p99 us':>10}{'fps':>10}{'lost':>8}"
        f"{'write us':>10}{'read us':>9}",
    ]
    for summary in document["cases"]:
        label = (
            f"{summary['width']}x{summary['height']} {summary['pixel_format']} "
            f"{summary['mode']} {summary['transport']}"
        )
        latency = summary["latency_us"] or {}
        sent, delivered = summary["frames_sent"], summary["frames_delivered"]
        lost = f"{100.0 * (sent - delivered) / sent:.0f}%" if sent else "-"
        lines.append(
            f"{label:<44}{_fmt(latency.get('p50'), 10)}{_fmt(latency.get('p95'), 10)}"
            f"{_fmt(latency.get('p99'), 10)}{_fmt(summary['delivered_fps'], 10, 0)}{lost:>8}"
            f"{_fmt(_p50(summary, 'write_cost_us'), 10)}{_fmt(_p50(summary, 'read_cost_us'), 9)}"
            + (f"  ERROR {summary['error']}" if summary.get("error") else "")
        )
    return "\n".join(lines)


def format_report(document: dict[str, Any]) -> str:
    ratios = document["ratios"]
    machine = document["machine"]
    out = [
        f"IPC frame hop, {machine['cpu_model']} ({machine['usable_cpus']} CPUs), "
        f"Python {machine['python']}, numpy {machine['numpy']}"
        + (" [quick]" if document["quick"] else ""),
        "latency: producer stamp just before the hand-off -> consumer has the frame; "
        "lost: frames not delivered (ring drops); write/read: ring call time per frame",
        "",
        format_table(document),
        "",
        "memcpy baseline (np.copyto of the same bytes, one process), p50 us, back to back: "
        + ", ".join(
            f"{key} {value['p50']:.1f}" for key, value in document["memcpy_us"]["flood"].items()
        ),
        "  paced at 30/s like the paced cases (cold CPU after each sleep): "
        + ", ".join(
            f"{key} {value['p50']:.1f}" for key, value in document["memcpy_us"]["paced"].items()
        ),
        "",
        "queue/ring p50 (target >= 10x at 512x512 paced):",
    ]
    for key, value in ratios["queue_over_ring"].items():
        out.append(
            f"  {key:<28} queue/ring-copy {_fmt(value['queue/ring-copy'], 6)}x   "
            f"queue/ring-view {_fmt(value['queue/ring-view'], 6)}x   "
            f"pipe/ring-copy {_fmt(value['pipe/ring-copy'], 6)}x"
        )
    out.append(
        "ring/memcpy p50 (target <= 3x; paced cases against the paced memcpy): hop = hand-off "
        "latency incl. wake-up; cost = write() + read() time"
    )
    for key, value in ratios["ring_over_memcpy"].items():
        out.append(
            f"  {key:<28} copy hop {_fmt(value['ring-copy hop'], 5)}x cost "
            f"{_fmt(value['ring-copy cost'], 5)}x   view hop {_fmt(value['ring-view hop'], 5)}x "
            f"cost {_fmt(value['ring-view cost'], 5)}x"
        )
    w, h, fmt = HEADLINE
    queue_key = f"{w}x{h} {fmt} paced"
    headline_queue = ratios["queue_over_ring"][queue_key]
    headline_copy = ratios["ring_over_memcpy"][queue_key]
    flood_copy = ratios["ring_over_memcpy"][f"{w}x{h} {fmt} flood"]
    out += [
        "",
        f"headline {queue_key}: queue/ring-copy {_fmt(headline_queue['queue/ring-copy'], 0)}x, "
        f"queue/ring-view {_fmt(headline_queue['queue/ring-view'], 0)}x (target >= "
        f"{QUEUE_TARGET:.0f}x)",
        f"headline {w}x{h} {fmt} ring/memcpy: paced hop copy "
        f"{_fmt(headline_copy['ring-copy hop'], 0)}x view {_fmt(headline_copy['ring-view hop'], 0)}x"
        f" (against the paced memcpy); flood cost copy {_fmt(flood_copy['ring-copy cost'], 0)}x"
        f" view {_fmt(flood_copy['ring-view cost'], 0)}x (target <= {MEMCPY_TARGET:.0f}x)",
    ]
    return "\n".join(out)
