"""The soak run: N streams through ``comfystream-byoc serve`` for D minutes while every
process of the runner is sampled, then pass/fail against the targets (``analysis``).

The runner, the orchestrator stand-in, the source and the sinks are those of the latency
benchmark (``benchmarks.latency``): real processes, real trickle, a real H.264 clip. Every
sample also scrapes ``/metrics`` and parses it with ``prometheus_client.parser``, so a runner
whose metrics pile up series shows here too. Everything started is stopped on every way out,
and a shared-memory segment the runner left is reported (and removed).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.latency import runner as runner_side
from benchmarks.latency.bench import (
    INVERT_WORKFLOW,
    _leftover_segments,
    _load_average,
    _schedule_notes,
    _wait_gone,
)
from benchmarks.latency.machine import machine_info
from benchmarks.latency.phase import PhaseSettings, System, run_phase
from benchmarks.latency.plot import Panel, Series, draw
from benchmarks.latency.progress import Progress
from benchmarks.latency.report import write_json
from benchmarks.soak.analysis import latency_per_minute, process_figures, verdict
from benchmarks.soak.sampler import Sampler

REPO = Path(__file__).resolve().parents[2]


@dataclass
class SoakConfig:
    """What ``python -m benchmarks.soak`` was asked to do."""

    streams: int = 2
    duration_s: float = 600.0
    sample_interval_s: float = 10.0
    warmup_s: float = 60.0
    minute_s: float = 60.0
    quick: bool = False
    engine: str = "auto"
    json_path: Path = REPO / "benchmarks" / "results" / "soak.json"
    plot_path: Path = REPO / "benchmarks" / "results" / "soak.png"
    progress: bool = True

    @classmethod
    def quick_form(cls, **changes: Any) -> SoakConfig:
        """The CI smoke: 30 s, samples every 2 s, 10 s warm-up, latency per 5 s. Too short to
        judge a slope: it proves the run works end to end and prints the figures."""
        base = {
            "duration_s": 30.0,
            "sample_interval_s": 2.0,
            "warmup_s": 10.0,
            "minute_s": 5.0,
            "quick": True,
            "json_path": REPO / "benchmarks" / "results" / "soak-quick.json",
            "plot_path": REPO / "benchmarks" / "results" / "soak-quick.png",
        }
        return cls(**{**base, **changes})


@dataclass
class MetricsLog:
    """Series count of each ``/metrics`` scrape (parsed, so a malformed page fails loudly)."""

    url: str
    http: aiohttp.ClientSession
    points: list[tuple[float, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dropped: dict[str, float] = field(default_factory=dict)
    """The runner's own drop counters (``worker.reason``, summed over the streams) at the last
    scrape that saw live streams."""
    last_live_t: float = float("inf")
    """Time of the last scrape that saw live streams: the samples up to it are those taken
    while the streams ran."""

    async def scrape(self, t: float) -> None:
        try:
            async with self.http.get(self.url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
                text = await resp.text()
                if resp.status != 200:
                    raise RuntimeError(f"HTTP {resp.status}")
            families = list(text_string_to_metric_families(text))
            self.points.append((round(t, 2), sum(len(f.samples) for f in families)))
            dropped: dict[str, float] = {}
            for family in families:
                if family.name == "byoc_stream_frames_dropped":
                    for sample in family.samples:
                        key = f"{sample.labels['worker']}.{sample.labels['reason']}"
                        dropped[key] = dropped.get(key, 0.0) + sample.value
            if any(f.name == "byoc_stream_fps" and f.samples for f in families):
                self.last_live_t = t
                self.dropped = dropped
        except Exception as exc:
            self.errors.append(f"{t:.0f}s: {exc!r}")


async def run(config: SoakConfig) -> dict[str, Any]:
    """Run the soak; return the report (also written as JSON and PNG)."""
    started_at = datetime.now(timezone.utc)
    wall_start = time.monotonic()
    progress = Progress(enabled=config.progress)
    log_dir = Path(tempfile.mkdtemp(prefix="soak-bench-"))
    workspace = log_dir / "workspace"
    workspace.mkdir()
    known_pids: set[int] = set()
    runner_pids: set[int] = set()
    notes: list[str] = []
    orchestrator = runner = None
    sampler: Sampler | None = None
    metrics: MetricsLog | None = None
    phase = None
    failed = False
    try:
        async with aiohttp.ClientSession() as http:
            try:
                progress.update("starting the orchestrator stand-in and the runner", force=True)
                orchestrator = await runner_side.start_orchestrator(http, log_dir)
                known_pids.add(orchestrator.process.pid)
                runner = await runner_side.start_runner(
                    http,
                    orchestrator,
                    log_dir,
                    capacity=config.streams,
                    device="cpu",
                    engine=config.engine,
                    workspace=workspace,
                )
                runner_pids.update((await runner.pids(http)).values())
                known_pids.update(runner_pids)
                active = runner

                async def pids() -> dict[str, int]:
                    found = await active.pids(http)
                    runner_pids.update(found.values())
                    known_pids.update(found.values())
                    return found

                metrics = MetricsLog(f"{runner.url}/metrics", http)
                sampler = Sampler(pids, config.sample_interval_s, extra=[metrics.scrape])
                sampler.start()
                system = System(
                    name="ours",
                    label="comfystream-byoc",
                    capability=lambda _k: runner_side.CAPABILITY,
                    params={"workflow": INVERT_WORKFLOW},
                    inverted=True,
                    announces_ready=True,
                    pids=lambda _n: pids(),
                )
                settings = PhaseSettings(
                    streams=config.streams,
                    duration_s=config.duration_s,
                    log_dir=log_dir,
                    warmup_s=1.0,
                    extra_pids={"bench-orchestrator": orchestrator.process.pid},
                )
                phase = await run_phase(http, orchestrator.url, system, settings, progress)
                await sampler.sample_once()  # the streams are stopped: one more look
            finally:
                progress.update("stopping", force=True)
                if sampler is not None:
                    await sampler.stop()
                if runner is not None:
                    await runner.process.stop(timeout=runner_side.STOP_TIMEOUT_S)
                if orchestrator is not None:
                    await orchestrator.process.stop()
    except BaseException:
        failed = True
        raise
    finally:
        left = await _wait_gone(known_pids)
        shm_left = _leftover_segments(runner_pids)
        if left:
            notes.append(f"processes still alive after the run: {left}")
        if shm_left:
            notes.append(f"runner left shared-memory segments (removed now): {shm_left}")
        if failed or left or shm_left or (phase is not None and phase.error):
            notes.append(f"logs kept in {log_dir}")
        else:
            shutil.rmtree(log_dir, ignore_errors=True)

    assert phase is not None and sampler is not None and metrics is not None
    if phase.error:
        notes.append(f"stream phase error: {phase.error}")
    notes.extend(_schedule_notes([phase]))
    samples = sampler.samples
    processes = process_figures(samples, config.warmup_s, metrics.last_live_t)
    per_minute = latency_per_minute(
        [(s.series["t"], s.series["glass_to_glass"]) for s in phase.per_stream], config.minute_s
    )
    drop_rate = phase.summary.get("drop_rate")
    result = verdict(processes, per_minute, drop_rate, config.warmup_s)
    if metrics.errors:
        notes.append(f"/metrics scrapes failed: {metrics.errors[:3]}")
    report = {
        "benchmark": "soak",
        "started_at": started_at.isoformat(timespec="seconds"),
        "wall_s": round(time.monotonic() - wall_start, 1),
        "command": sys.argv,
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
        "machine": machine_info("cpu"),
        "passed": result["passed"],
        "checks": result["checks"],
        "processes": processes,
        "latency_p50_per_bin_ms": per_minute,
        "bin_s": config.minute_s,
        "streams_summary": phase.summary,
        "runner_dropped_by_reason": metrics.dropped,
        "load_average_after": _load_average(),
        "metrics_series_per_scrape": metrics.points,
        "samples": [asdict(s) for s in samples],
        "cleanup": {"processes_left": left, "shm_segments_left": shm_left},
        "notes": notes,
    }
    write_json(report, config.json_path)
    draw(_panels(report, samples), config.plot_path)
    progress.done(f"done in {report['wall_s']:.0f} s: {config.json_path}, {config.plot_path}")
    print(format_report(report))
    return report


def _panels(report: dict[str, Any], samples: list[Any]) -> list[Panel]:
    def per_process(attr: str, scale: float = 1.0) -> list[Series]:
        names = sorted({s.process for s in samples})
        return [
            Series(name, [(s.t, getattr(s, attr) / scale) for s in samples if s.process == name])
            for name in names
        ]

    x = "seconds since sampling started"
    latency = Series(
        f"glass-to-glass p50 per {report['bin_s']:g} s",
        [(t + report["bin_s"] / 2, v) for t, v in report["latency_p50_per_bin_ms"]],
    )
    return [
        Panel("Resident memory per process", per_process("rss_bytes", 1024 * 1024), "MiB", x),
        Panel("Open file descriptors per process", per_process("fds"), "fds", x),
        Panel("Threads per process", per_process("threads"), "thr", x),
        Panel("Latency", [latency], "ms", "seconds since the first frame"),
    ]


def format_report(report: dict[str, Any]) -> str:
    """The report as a few lines of text."""
    config = report["config"]
    lines = [
        f"soak: {config['streams']} streams for {config['duration_s']:g} s "
        f"-> {'PASS' if report['passed'] else 'FAIL'}",
        f"{'process':<14} {'RSS MiB first/last':>20} {'MiB/min':>9} {'fds':>9} {'threads':>9}",
    ]
    for name, p in report["processes"].items():
        growth = p["rss_growth_mib_per_min"]
        lines.append(
            f"{name:<14} {p['rss_mib_first']:>9}/{p['rss_mib_last']:<10} "
            f"{'-' if growth is None else growth:>9} "
            f"{p['fds'][0]:>4}->{p['fds'][1]:<4} {p['threads'][0]:>4}->{p['threads'][1]:<4}"
            + ("  (restarted)" if p["restarted"] else "")
            + (
                f"  after stop: {p['after_stop']['rss_mib']} MiB, {p['after_stop']['fds']} fds, "
                f"{p['after_stop']['threads']} threads"
                if "after_stop" in p
                else ""
            )
        )
    bins = ", ".join(f"{v:g}" for _, v in report["latency_p50_per_bin_ms"])
    lines.append(f"latency p50 per {report['bin_s']:g} s (ms): {bins}")
    summary = report["streams_summary"]
    lines.append(
        f"frames sent {summary.get('frames_sent')}, seen {summary.get('frames_seen')}, "
        f"fps out per stream {summary.get('fps_out_per_stream')}; runner drops by reason: "
        f"{report['runner_dropped_by_reason'] or '-'}; load average after {report['load_average_after']}"
    )
    for name, check in report["checks"].items():
        figure = {k: v for k, v in check.items() if k not in ("target", "passed")}
        lines.append(
            f"  {'ok  ' if check['passed'] else 'FAIL'} {name}: {check['target']} {figure or ''}"
        )
    series = [n for _, n in report["metrics_series_per_scrape"]]
    if series:
        lines.append(f"/metrics samples per scrape: min {min(series)}, max {max(series)}")
    lines.extend(f"note: {note}" for note in report["notes"])
    return "\n".join(lines)
