"""One phase of the benchmark: N concurrent streams through one system (our runner or the
baseline), started through the orchestrator stand-in as a gateway starts them, fed by the
source process in real time and watched by one sink per stream.

Order: start the streams -> subscribe output and events -> wait until each stream is ready
(ours: a ``ready``/``processing`` status event; the baseline sends none, so a short settle) ->
CPU window opens -> the source sends ``duration_s`` of clip -> CPU window closes -> wait for
the last frames (``drain_s`` at most) -> stop the streams -> close the readers. Every path out
(errors, Ctrl-C) stops the streams and the source.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.latency.analysis import StreamFigures, analyse_stream, combine
from benchmarks.latency.cpu import CpuWindow
from benchmarks.latency.events import EventsReader
from benchmarks.latency.figures import binned_median
from benchmarks.latency.gateway import StreamUrls, start_stream_when_registered, stop_stream
from benchmarks.latency.live_runner_client import start_live_runner_stream, stop_live_runner_stream
from benchmarks.latency.processes import ManagedProcess
from benchmarks.latency.profiler import PhaseProfiler
from benchmarks.latency.progress import Progress
from benchmarks.latency.sink import OutputSink
from benchmarks.latency.source import SourceRecord
from benchmarks.media.clip import COUNTER_MODULO

REPO = Path(__file__).resolve().parents[2]


@dataclass
class System:
    """A runner under test, as a phase needs it."""

    name: str  # "ours" or "baseline"
    label: str  # shown in tables
    capability: Callable[[int], str]  # capability of the k-th concurrent stream
    params: dict[str, Any]
    inverted: bool  # the output pictures are inverted
    announces_ready: bool  # sends a ready/processing status event once set up
    pids: Callable[[int], Awaitable[dict[str, int]]]  # processes serving N streams
    control_plane: str = "byoc"  # how streams are started: byoc or live-runner


@dataclass
class PhaseSettings:
    streams: int
    duration_s: float
    log_dir: Path
    fps: int = 30
    width: int = 512
    height: int = 512
    warmup_s: float = 1.0
    settle_s: float = 0.5
    drain_s: float = 3.0
    tail_s: float = 0.5  # uncounted frames after the measured ones (see ``source``)
    extra_pids: dict[str, int] = field(default_factory=dict)  # also measured, e.g. the stand-in
    ready_timeout_s: float = 90.0
    clip_path: Path | None = None  # a saved ``LoopingClip`` the source replays (no encoding)
    counter_period: int = COUNTER_MODULO  # frames after which the clip's counter repeats
    profile_dir: Path | None = None  # py-spy the system's processes while frames flow


@dataclass
class PhaseResult:
    system: str
    streams: int
    summary: dict[str, Any] = field(default_factory=dict)
    per_stream: list[StreamFigures] = field(default_factory=list)
    cpu: dict[str, float | None] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "streams": self.streams,
            "error": self.error,
            "summary": self.summary,
            "cpu_percent": self.cpu,
            "per_stream": [s.summary for s in self.per_stream],
            "timeline": self.timeline(),
            **({"profile": self.profile} if self.profile else {}),
        }

    def timeline(self, bin_s: float = 1.0) -> dict[str, list[tuple[float, float]]]:
        """Medians over the streams per ``bin_s`` of the run: ``[(t, ms), ...]`` per series."""
        out = {
            kind: binned_median([(s.series["t"], s.series[kind]) for s in self.per_stream], bin_s)
            for kind in ("glass_to_glass", "runner_added")
        }
        stages: dict[str, tuple[list[float], list[float]]] = {}
        for stream in self.per_stream:
            for t, p50s in stream.stage_series:
                for name, value in p50s.items():
                    times, values = stages.setdefault(name, ([], []))
                    times.append(t)
                    values.append(value)
        for name, (times, values) in sorted(stages.items()):
            out[f"stage_{name}_p50"] = binned_median([(times, values)], bin_s)
        return out


async def run_phase(
    http: aiohttp.ClientSession,
    orchestrator_url: str,
    system: System,
    settings: PhaseSettings,
    progress: Progress,
) -> PhaseResult:
    """Run one phase (see the module docstring); errors end up in ``PhaseResult.error``."""
    result = PhaseResult(system.name, settings.streams)
    token = secrets.token_hex(3)
    ids = [f"lat-{system.name}-{settings.streams}x-{k}-{token}" for k in range(settings.streams)]
    started: list[StreamUrls] = []
    sinks: list[OutputSink] = []
    readers: list[EventsReader] = []
    source: ManagedProcess | None = None
    records: list[SourceRecord] = []
    profiler: PhaseProfiler | None = None
    title = f"{system.label} x{settings.streams}"
    try:
        progress.update(f"[{title}] starting streams", force=True)
        outcomes = await asyncio.gather(
            *(
                start_live_runner_stream(http, orchestrator_url, system.params)
                if system.control_plane == "live-runner"
                else start_stream_when_registered(
                    http, orchestrator_url, system.capability(k), stream_id, system.params
                )
                for k, stream_id in enumerate(ids)
            ),
            return_exceptions=True,
        )
        started = [o for o in outcomes if isinstance(o, StreamUrls)]
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        if errors:
            raise RuntimeError(f"stream start failed: {errors[0]}")
        for urls in started:
            sink = OutputSink(
                urls.stream_id,
                urls.subscribe_url,
                fps=settings.fps,
                inverted=system.inverted,
                counter_period=settings.counter_period,
            )
            sink.start()
            sinks.append(sink)
            reader = EventsReader(urls.stream_id, urls.events_url)
            reader.start()
            readers.append(reader)
        if system.announces_ready:
            progress.update(f"[{title}] waiting for the streams to be ready", force=True)
            states = await asyncio.gather(
                *(
                    r.wait_for_state({"ready", "processing"}, settings.ready_timeout_s)
                    for r in readers
                )
            )
            if any(state is None for state in states):
                raise RuntimeError(
                    f"a stream was not ready within {settings.ready_timeout_s:g}s "
                    f"(states seen: {[r.log.states()[-3:] for r in readers]})"
                )
        await asyncio.sleep(settings.settle_s)

        source = ManagedProcess(
            f"source-{system.name}-{settings.streams}",
            [sys.executable, "-m", "benchmarks.latency.source"],
            log_path=settings.log_dir / "source.log",
            cwd=REPO,
            stdin=True,
            stdout=True,
        )
        await source.start()
        await source.write_json_line(
            {
                "width": settings.width,
                "height": settings.height,
                "fps": settings.fps,
                "duration_s": settings.duration_s,
                "tail_s": settings.tail_s,
                "clip_path": str(settings.clip_path) if settings.clip_path else None,
                "streams": [
                    {
                        "stream_id": urls.stream_id,
                        "publish_url": urls.publish_url,
                        "offset_s": k / (settings.fps * settings.streams),
                    }
                    for k, urls in enumerate(started)
                ],
            }
        )
        await source.read_json_line(60.0)  # {"ready": true}
        pids = await system.pids(settings.streams)
        pids.update({"bench-source": source.pid, "bench-sink": os.getpid(), **settings.extra_pids})
        cpu = CpuWindow(pids)
        if settings.profile_dir is not None:
            profiler = PhaseProfiler(
                settings.profile_dir,
                f"{system.name}-x{settings.streams}",
                {k: v for k, v in pids.items() if not k.startswith("bench-")},
                settings.duration_s,
            )
            await profiler.start()
        t0 = time.monotonic_ns() + 100_000_000
        for k, sink in enumerate(sinks):
            sink.t0_ns = t0 + int(1e9 * k / (settings.fps * settings.streams))
        cpu.start()
        await source.write_json_line({"t0_ns": t0})
        records, source_cpu_s = await _follow(source, sinks, settings, progress, title, t0)
        cpu.stop()
        result.cpu = cpu.percent()
        if source_cpu_s is not None and cpu.stopped_at > cpu.started_at:
            # The source exits once it sent its records, often before /proc could be read.
            wall = cpu.stopped_at - cpu.started_at
            result.cpu["bench-source"] = round(100.0 * source_cpu_s / wall, 1)
        if profiler is not None:
            result.profile = await profiler.stop()
            profiler = None
        await _drain(sinks, records, settings.drain_s)
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        await asyncio.gather(
            *(
                stop_live_runner_stream(http, u)
                if system.control_plane == "live-runner"
                else stop_stream(http, orchestrator_url, u.capability, u.stream_id)
                for u in started
            ),
            return_exceptions=True,
        )
        await asyncio.gather(*(s.close() for s in sinks), *(r.close() for r in readers))
        if source is not None:
            await source.stop(timeout=5.0)
        if profiler is not None:  # an error cut the phase short: end the recordings
            await profiler.stop(timeout_s=0.0)

    by_id = {r.stream_id: r for r in records}
    for sink, reader in zip(sinks, readers, strict=True):
        record = by_id.get(sink.stream_id)
        if record is not None:
            result.per_stream.append(
                analyse_stream(record, sink.record, reader.log, warmup_s=settings.warmup_s)
            )
    if result.per_stream:
        result.summary = combine(result.per_stream, warmup_s=settings.warmup_s)
    return result


async def _follow(
    source: ManagedProcess,
    sinks: list[OutputSink],
    settings: PhaseSettings,
    progress: Progress,
    title: str,
    t0: int,
) -> tuple[list[SourceRecord], float | None]:
    """Wait for the source's records (and the CPU seconds it reports), updating the progress
    line meanwhile."""
    reading = asyncio.create_task(
        source.read_json_line(settings.duration_s + settings.tail_s + 60.0)
    )
    while not reading.done():
        elapsed = max(0.0, (time.monotonic_ns() - t0) / 1e9)
        seen = sum(len(s.record.frames) for s in sinks)
        recent = [v for v in (s.recent_latency_ms() for s in sinks) if v is not None]
        live = f"  latency now ~{max(recent):.0f} ms" if recent else ""
        progress.update(
            f"[{title}] {min(elapsed, settings.duration_s):5.1f}/{settings.duration_s:g} s"
            f"  frames out {seen}{live}"
        )
        await asyncio.wait([reading], timeout=0.25)
    document = reading.result()
    records = document.get("records")
    if not isinstance(records, list):
        raise RuntimeError("the source sent no records")
    cpu_s = document.get("cpu_s")
    return (
        [SourceRecord.from_json(r) for r in records],
        float(cpu_s) if isinstance(cpu_s, (int, float)) else None,
    )


async def _drain(sinks: list[OutputSink], records: list[SourceRecord], limit_s: float) -> None:
    """Wait until every sink saw its stream's last frame, or nothing arrived for 1 s, or
    ``limit_s`` passed."""
    last_index = {r.stream_id: r.frames_sent - 1 for r in records}
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if all(s.highest_index >= last_index.get(s.stream_id, -1) for s in sinks):
            return
        newest = max((s.record.last_arrival_ns for s in sinks), default=0)
        if newest and time.monotonic_ns() - newest > 1_000_000_000:
            return
        await asyncio.sleep(0.05)
