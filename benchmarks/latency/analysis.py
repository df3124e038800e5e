"""Per-frame stamps of the source and the sink, and a stream's status events, turned into the
figures the benchmark reports.

Definitions (all on one monotonic clock, same host), for a frame ``i`` seen at the sink:

* ``glass_to_glass = decoded - capture``: from the moment the source has the frame to the
  moment the viewer has it decoded (includes the source's encode and the viewer's decode);
* ``sent_to_decoded = decoded - sent``: the same from the frame's last input byte on;
* ``runner_added = arrived - sent``: glass-to-glass minus the source's encode
  (``sent - capture``) and the viewer's decode (``decoded - arrived``): what the runner and
  the trickle hops through the orchestrator add;
* frames in the first ``warmup_s`` seconds are left out of the steady-state figures (the
  join and the first keyframe), but count for drops and the first-frame time;
* drift is the least-squares slope of glass-to-glass over the steady frames, reported only
  when they span at least ``MIN_DRIFT_WINDOW_S``.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks.latency.events import EventLog, drops_of, stages_of
from benchmarks.latency.figures import drop_rate, percentiles, slope_per_minute
from benchmarks.latency.sink import SinkRecord
from benchmarks.latency.source import SourceRecord


@dataclass
class FrameTable:
    """Matched frames of one stream, as arrays (ns) indexed alike."""

    index: np.ndarray
    capture: np.ndarray
    sent: np.ndarray
    arrived: np.ndarray
    decoded: np.ndarray

    @classmethod
    def build(cls, source: SourceRecord, sink: SinkRecord) -> FrameTable:
        rows = [
            (i, source.capture_ns[i], source.sent_ns[i], arrived, decoded)
            for i, (arrived, decoded) in sorted(sink.frames.items())
            if 0 <= i < source.frames_sent
        ]
        arr = np.asarray(rows, dtype=np.int64).reshape(-1, 5)
        return cls(*(arr[:, k] for k in range(5)))

    def __len__(self) -> int:
        return int(self.index.size)

    def ms(self, end: np.ndarray, start: np.ndarray) -> np.ndarray:
        return (end - start) / 1e6


@dataclass
class StreamFigures:
    """The figures of one stream of a phase (JSON-ready via ``summary``)."""

    stream_id: str
    summary: dict[str, Any]
    series: dict[str, list[float]] = field(default_factory=dict)  # for the plot
    stage_series: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    samples: dict[str, np.ndarray] = field(default_factory=dict)  # steady per-frame ms


MIN_DRIFT_WINDOW_S = 10.0
SAMPLE_KINDS = ("glass_to_glass", "sent_to_decoded", "runner_added", "encode", "decode")


def stage_summary(
    events: list[tuple[float, dict[str, Any]]],
) -> dict[str, dict[str, float | int]]:
    """Per stage over report intervals with samples: the median interval p50/p95/p99, the
    worst interval p99, and the frames counted."""
    by_stage: dict[str, list[Any]] = {}
    for _, event in events:
        for name, figures in stages_of(event).items():
            if figures.count > 0:
                by_stage.setdefault(name, []).append(figures)
    out: dict[str, dict[str, float | int]] = {}
    for name, items in sorted(by_stage.items()):
        out[name] = {
            "p50": round(statistics.median(f.p50 for f in items), 3),
            "p95": round(statistics.median(f.p95 for f in items), 3),
            "p99": round(statistics.median(f.p99 for f in items), 3),
            "worst_p99": round(max(f.p99 for f in items), 3),
            "intervals": len(items),
            "frames": sum(f.count for f in items),
        }
    return out


def _median_fps(events: list[tuple[float, dict[str, Any]]]) -> float | None:
    """The runner's own output fps: the median over the steady status events that carry one."""
    values = [
        float(e["fps_out"])
        for _, e in events
        if isinstance(e.get("fps_out"), (int, float)) and e.get("state") == "processing"
    ]
    return round(statistics.median(values), 2) if values else None


def missing_ranges(sent: int, seen: np.ndarray, limit: int = 20) -> list[list[int]]:
    """Frame indices never seen, as ``[first, last]`` ranges (the first ``limit`` of them)."""
    mask = np.ones(sent, dtype=bool)
    mask[seen[(seen >= 0) & (seen < sent)]] = False
    ranges: list[list[int]] = []
    start = None
    for index, missing in enumerate(mask):
        if missing and start is None:
            start = index
        elif not missing and start is not None:
            ranges.append([start, index - 1])
            start = None
    if start is not None:
        ranges.append([start, sent - 1])
    return ranges[:limit]


def runner_drops(log: EventLog | None) -> dict[str, int]:
    """Drops by reason the runner reported, the largest value each reason reached."""
    drops: dict[str, int] = {}
    if log is None:
        return drops
    for _, event in log.events:
        for reason, count in drops_of(event).items():
            drops[reason] = max(drops.get(reason, 0), count)
    if len(drops) > 1:
        drops.pop("total", None)  # early events carry only the total; reasons came later
    return drops


def analyse_stream(
    source: SourceRecord,
    sink: SinkRecord,
    events: EventLog | None,
    *,
    warmup_s: float = 1.0,
) -> StreamFigures:
    """Match the source's and the sink's stamps of one stream and compute its figures."""
    table = FrameTable.build(source, sink)
    t0 = source.t0_ns
    sent = source.frames_sent
    seen = len(table)
    all_ms = {
        "glass_to_glass": table.ms(table.decoded, table.capture),
        "sent_to_decoded": table.ms(table.decoded, table.sent),
        "runner_added": table.ms(table.arrived, table.sent),
        "encode": table.ms(table.sent, table.capture),
        "decode": table.ms(table.decoded, table.arrived),
    }
    steady = table.capture >= t0 + int(warmup_s * 1e9)
    samples = {kind: values[steady] for kind, values in all_ms.items()}
    capture_s = (table.capture - t0) / 1e9
    drift = slope_per_minute(capture_s[steady], samples["glass_to_glass"])

    first_output_ms = None
    if seen and sent:
        first_output_ms = round((int(table.decoded.min()) - source.sent_ns[0]) / 1e6, 3)
    steady_seen = int(steady.sum())
    steady_span_s = 0.0
    if sent:
        last_capture = source.capture_ns[sent - 1]
        steady_span_s = max(0.0, (last_capture - t0) / 1e9 - warmup_s) + 1 / source.fps
    fps_out = round(steady_seen / steady_span_s, 2) if steady_span_s > 0 else None
    if steady_span_s < MIN_DRIFT_WINDOW_S:
        drift = None  # a slope over a few seconds measures the warm-up, not a trend

    event_list = events.events if events is not None else []
    stage_events = [
        ((at - t0) / 1e9, event) for at, event in event_list if at >= t0 + int(warmup_s * 1e9)
    ]
    reported = runner_drops(events)
    missing = max(0, sent - seen)
    summary: dict[str, Any] = {
        "stream_id": source.stream_id,
        "frames_sent": sent,
        "frames_seen": seen,
        "frames_missing": missing,
        "missing_ranges": missing_ranges(sent, table.index),
        "runner_dropped": reported,
        "sink": sink.to_json(),
        "source": {
            "bytes": source.bytes_sent,
            "segments": source.segments,
            "max_lateness_ms": round(source.max_lateness_ms, 3),
            "error": source.error,
        },
        "first_output_ms": first_output_ms,
        "fps_out": fps_out,
        "runner_fps_out": _median_fps(stage_events),
        "drift_ms_per_min": drift,
        "steady_s": round(steady_span_s, 3),
        "stages": stage_summary(stage_events),
    }
    for kind, values in samples.items():
        summary[kind] = percentiles(values)
    # Events while frames flowed (each covers the report interval before it).
    end_s = (source.capture_ns[sent - 1] - t0) / 1e9 + 1.0 if sent else 0.0
    stage_series = [
        (round(t, 3), {name: f.p50 for name, f in stages_of(event).items() if f.count})
        for t, event in (((at - t0) / 1e9, event) for at, event in event_list)
        if 0.0 <= t <= end_s
    ]
    return StreamFigures(
        stream_id=source.stream_id,
        summary=summary,
        series={
            "t": [round(float(t), 4) for t in capture_s],
            "glass_to_glass": [round(float(v), 3) for v in all_ms["glass_to_glass"]],
            "runner_added": [round(float(v), 3) for v in all_ms["runner_added"]],
        },
        stage_series=stage_series,
        samples=samples,
    )


def combine(streams: list[StreamFigures], *, warmup_s: float = 1.0) -> dict[str, Any]:
    """Phase-level figures over every stream: percentiles of the pooled steady frames, sums of
    frames and drops, mean fps, the drift of the pooled frames."""
    out: dict[str, Any] = {}
    for kind in SAMPLE_KINDS:
        pooled = [s.samples[kind] for s in streams if kind in s.samples]
        values = np.concatenate(pooled) if pooled else np.zeros(0)
        out[kind] = percentiles(values)
    sent = sum(s.summary["frames_sent"] for s in streams)
    missing = sum(s.summary["frames_missing"] for s in streams)
    reported: dict[str, int] = {}
    for s in streams:
        for reason, count in s.summary["runner_dropped"].items():
            reported[reason] = reported.get(reason, 0) + count
    out["frames_sent"] = sent
    out["frames_seen"] = sum(s.summary["frames_seen"] for s in streams)
    out["frames_missing"] = missing
    out["runner_dropped"] = reported
    out["drop_rate"] = round(drop_rate(sent, missing), 4) if sent else None
    fps = [s.summary["fps_out"] for s in streams if s.summary["fps_out"] is not None]
    out["fps_out_per_stream"] = round(sum(fps) / len(fps), 2) if fps else None
    firsts = [s.summary["first_output_ms"] for s in streams if s.summary["first_output_ms"]]
    out["first_output_ms"] = max(firsts) if firsts else None
    times: list[float] = []
    values_g2g: list[float] = []
    for s in streams:
        for t, v in zip(s.series["t"], s.series["glass_to_glass"], strict=True):
            if t >= warmup_s:
                times.append(t)
                values_g2g.append(v)
    spans = [s.summary["steady_s"] for s in streams]
    long_enough = bool(spans) and min(spans) >= MIN_DRIFT_WINDOW_S
    out["drift_ms_per_min"] = slope_per_minute(times, values_g2g) if long_enough else None
    out["stages"] = _pooled_stages(streams)
    return out


def _pooled_stages(streams: list[StreamFigures]) -> dict[str, dict[str, float | int]]:
    """Per stage: the median over streams of each stream's figures (a stream's are already
    medians over its report intervals)."""
    by_stage: dict[str, list[dict[str, float | int]]] = {}
    for s in streams:
        for name, figures in s.summary["stages"].items():
            by_stage.setdefault(name, []).append(figures)
    out: dict[str, dict[str, float | int]] = {}
    for name, items in sorted(by_stage.items()):
        out[name] = {
            key: round(statistics.median(float(f[key]) for f in items), 3)
            for key in ("p50", "p95", "p99")
        }
        out[name]["worst_p99"] = max(float(f["worst_p99"]) for f in items)
        out[name]["frames"] = sum(int(f["frames"]) for f in items)
    return out
