"""The figures of one smoke run and how they are printed."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from byoc.smoke.sink import SinkLog
from byoc.smoke.source import SourceLog


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100, nearest rank) of ``values``; ``None`` when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def missing_frames(seen: set[int], sent: int) -> dict[str, int]:
    """Input frames ``0..sent-1`` absent from ``seen``: before the first seen one, between the
    first and the last, and after the last."""
    inside = sorted(i for i in seen if 0 <= i < sent)
    if not inside:
        return {"start": sent, "middle": 0, "end": 0}
    first, last = inside[0], inside[-1]
    return {
        "start": first,
        "middle": (last - first + 1) - len(inside),
        "end": sent - 1 - last,
    }


@dataclass
class SmokeReport:
    """What a smoke run saw; ``ok`` when processed frames came back."""

    target: str
    stream_id: str
    frames_in: int = 0
    frames_out: int = 0  # pictures decoded from the output
    frames_identified: int = 0  # of those, pictures whose frame counter was read
    duplicates: int = 0
    # input frames not seen in the output, by where they were (identified frames only)
    missing: dict[str, int] = field(default_factory=dict)
    start_ms: float | None = None  # how long the stream start call took
    first_frame_ms: float | None = None  # first input frame made -> first output picture decoded
    latency_ms: dict[str, float | None] = field(default_factory=dict)  # glass to glass
    output_size: str | None = None
    output_video: str | None = None
    last_event: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.frames_out > 0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def lines(self) -> list[str]:
        """The human form, one figure a line."""

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f} ms"

        lat = self.latency_ms
        out = [
            f"smoke {self.target} stream {self.stream_id}",
            f"  frames in        {self.frames_in}",
            f"  frames out       {self.frames_out} ({self.frames_identified} identified by "
            f"their counter, {self.duplicates} repeated)",
            f"  frames missing   {self.missing.get('start', 0)} at the start, "
            f"{self.missing.get('middle', 0)} in the middle, {self.missing.get('end', 0)} at the end",
            f"  stream start     {ms(self.start_ms)}",
            f"  first frame      {ms(self.first_frame_ms)}",
            f"  glass-to-glass   p50 {ms(lat.get('p50'))}  p90 {ms(lat.get('p90'))}  "
            f"p99 {ms(lat.get('p99'))}  max {ms(lat.get('max'))}",
        ]
        if self.output_size:
            out.append(f"  output size      {self.output_size}")
        if self.output_video:
            out.append(f"  output video     {self.output_video}")
        if self.last_event is not None:
            event = self.last_event
            out.append(
                f"  last status      state={event.get('state')} fps_in={event.get('fps_in')} "
                f"fps_out={event.get('fps_out')} last_error={event.get('last_error')}"
            )
        out += [f"  error            {line}" for line in self.errors]
        out.append("  result           " + ("OK" if self.ok else "FAILED: no frames came back"))
        return out


def build_report(report: SmokeReport, source: SourceLog, sink: SinkLog, t0_ns: int) -> SmokeReport:
    """Fill ``report`` from what the source sent and the reader got back."""
    report.frames_in = source.frames_sent
    report.frames_out = sink.decoded
    report.frames_identified = len(sink.frames)
    report.duplicates = sink.duplicates
    report.missing = missing_frames(set(sink.frames), source.frames_sent)
    if sink.first_picture_ns and t0_ns:
        report.first_frame_ms = (sink.first_picture_ns - t0_ns) / 1e6
    latencies = [
        (decoded - source.captured_ns[index]) / 1e6
        for index, decoded in sink.frames.items()
        if 0 <= index < len(source.captured_ns)
    ]
    report.latency_ms = {
        "p50": percentile(latencies, 50),
        "p90": percentile(latencies, 90),
        "p99": percentile(latencies, 99),
        "max": max(latencies) if latencies else None,
    }
    if sink.size is not None:
        report.output_size = f"{sink.size[0]}x{sink.size[1]}"
    report.errors += [e for e in (source.error, sink.error) if e]
    return report
