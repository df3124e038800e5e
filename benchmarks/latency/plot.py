"""The PNG plot: latency over time, one panel per stream count, drawn with Pillow.

Each panel shows, on a log scale in ms against seconds since the first frame: our glass-to-glass
latency and runner-added latency (median per 0.5 s over the streams), the baseline's
glass-to-glass latency, and the p50 of each of our pipeline stages per status-event interval.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from benchmarks.latency.figures import binned_median

WIDTH = 1400
PANEL_HEIGHT = 380
LEFT, RIGHT, TOP, BOTTOM = 80, 300, 44, 50
BIN_S = 0.5
BASELINE_COLOR = (0, 0, 0)
PALETTE = [
    (31, 119, 180),
    (214, 39, 40),
    (44, 160, 44),
    (255, 127, 14),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
    (90, 90, 160),
]


@dataclass
class Series:
    label: str
    points: list[tuple[float, float]]
    width: int = 2
    dashed: bool = False
    color: tuple[int, int, int] | None = None


@dataclass
class Panel:
    title: str
    series: list[Series] = field(default_factory=list)
    unit: str = "ms"
    x_label: str = "seconds since the first frame"


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def _log_ticks(low: float, high: float) -> list[float]:
    ticks = []
    for exponent in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1):
        for mantissa in (1, 2, 5):
            value = mantissa * 10.0**exponent
            if low <= value <= high:
                ticks.append(value)
    return ticks


def _time_step(span: float) -> float:
    for step in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300):
        if span / step <= 12:
            return step
    return 600.0


def _label(value: float) -> str:
    return f"{value:g}"


def _dashed_line(
    draw: ImageDraw.ImageDraw, points: list[tuple[float, float]], color: tuple, width: int
) -> None:
    for k, (a, b) in enumerate(itertools.pairwise(points)):
        if k % 2 == 0:
            draw.line([a, b], fill=color, width=width)


@dataclass(frozen=True)
class _Axes:
    """Data to pixels: linear time on x, log latency on y."""

    x0: int
    x1: int
    y0: int
    y1: int
    low: float
    high: float
    t_end: float

    def point(self, t: float, v: float) -> tuple[float, float]:
        x = self.x0 + (self.x1 - self.x0) * (t / self.t_end)
        span = math.log10(self.high) - math.log10(self.low)
        ratio = (math.log10(max(v, self.low)) - math.log10(self.low)) / span
        return x, self.y1 - (self.y1 - self.y0) * ratio


def draw(panels: list[Panel], path: Path) -> None:
    """Write ``panels`` (stacked) as a PNG at ``path``."""
    height = max(1, len(panels)) * PANEL_HEIGHT
    image = Image.new("RGB", (WIDTH, height), "white")
    canvas = ImageDraw.Draw(image)
    title_font, font, small = _font(18), _font(14), _font(12)
    for index, panel in enumerate(panels):
        top = index * PANEL_HEIGHT
        x0, x1 = LEFT, WIDTH - RIGHT
        y0, y1 = top + TOP, top + PANEL_HEIGHT - BOTTOM
        canvas.text((LEFT, top + 12), panel.title, fill="black", font=title_font)
        values = [v for s in panel.series for _, v in s.points if v > 0]
        times = [t for s in panel.series for t, _ in s.points]
        if not values:
            canvas.text((x0 + 10, (y0 + y1) // 2), "no data", fill="black", font=font)
            continue
        low = 10.0 ** math.floor(math.log10(max(min(values), 0.01)))
        high = 10.0 ** math.ceil(math.log10(max(values) * 1.05))
        t_end = max(1.0, max(times) if times else 1.0)
        px = _Axes(x0, x1, y0, y1, low, high, t_end).point

        for tick in _log_ticks(low, high):
            _, y = px(0.0, tick)
            canvas.line([(x0, y), (x1, y)], fill=(225, 225, 225), width=1)
            canvas.text((x0 - 8, y), _label(tick), fill="black", font=small, anchor="rm")
        step = _time_step(t_end)
        tick_t = 0.0
        while tick_t <= t_end + 1e-9:
            x, _ = px(tick_t, low)
            canvas.line([(x, y0), (x, y1)], fill=(235, 235, 235), width=1)
            canvas.text((x, y1 + 6), _label(tick_t), fill="black", font=small, anchor="mt")
            tick_t += step
        canvas.rectangle([x0, y0, x1, y1], outline="black", width=1)
        canvas.text(
            ((x0 + x1) // 2, y1 + 26),
            panel.x_label,
            fill="black",
            font=font,
            anchor="mt",
        )
        canvas.text((18, (y0 + y1) // 2), panel.unit, fill="black", font=font, anchor="mm")
        legend_y = y0
        for k, series in enumerate(panel.series):
            color = series.color or PALETTE[k % len(PALETTE)]
            points = [px(t, v) for t, v in series.points if v > 0]
            if len(points) >= 2:
                if series.dashed:
                    _dashed_line(canvas, points, color, series.width)
                else:
                    canvas.line(points, fill=color, width=series.width)
            elif points:
                x, y = points[0]
                canvas.ellipse([x - 2, y - 2, x + 2, y + 2], fill=color)
            lx = x1 + 16
            canvas.line([(lx, legend_y + 8), (lx + 24, legend_y + 8)], fill=color, width=3)
            canvas.text((lx + 30, legend_y + 1), series.label, fill="black", font=small)
            legend_y += 20
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")


def latency_panels(phases: list[dict]) -> list[Panel]:
    """One panel per stream count from the phases' plot data (see ``bench``): each phase dict
    has ``system``, ``streams``, ``label``, ``series`` (per stream: ``t``, ``glass_to_glass``,
    ``runner_added``) and ``stage_series`` (per stream: ``[(t, {stage: p50})]``)."""
    counts = sorted({p["streams"] for p in phases})
    panels = []
    for n in counts:
        panel = Panel(f"{n} concurrent stream{'s' if n > 1 else ''}: latency over time (ms, log)")
        for phase in (p for p in phases if p["streams"] == n):
            label = phase["label"]
            series = phase["series"]
            g2g = binned_median([(s["t"], s["glass_to_glass"]) for s in series], BIN_S)
            ours = phase["system"] == "ours"
            panel.series.append(
                Series(
                    f"{label}: glass-to-glass",
                    g2g,
                    width=3,
                    color=PALETTE[0] if ours else BASELINE_COLOR,
                )
            )
            if phase["system"] == "ours":
                added = binned_median([(s["t"], s["runner_added"]) for s in series], BIN_S)
                panel.series.append(
                    Series(f"{label}: runner-added", added, dashed=True, color=PALETTE[1])
                )
                by_stage: dict[str, list[tuple[float, float]]] = defaultdict(list)
                for stream in phase["stage_series"]:
                    for t, stages in stream:
                        for name, p50 in stages.items():
                            if t >= 0:
                                by_stage[name].append((t, p50))
                for name in sorted(by_stage):
                    points = sorted(by_stage[name])
                    merged = binned_median([([t for t, _ in points], [v for _, v in points])], 1.0)
                    panel.series.append(Series(f"stage {name} p50", merged))
        panels.append(panel)
    return panels
