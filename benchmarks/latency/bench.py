"""The whole benchmark run: start the stand-in, our runner and the baseline processes, run each
stream count through ours then the baseline, stop everything, check that nothing is left,
report.

Everything this starts is stopped on the way out, whatever the way out (error, Ctrl-C): the
streams, the source, the baseline processes, the runner (SIGTERM, then SIGKILL), the stand-in.
Then the run checks that none of those processes is alive and that no shared-memory segment of
our runner is left in ``/dev/shm`` (any found is removed and reported).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.latency import baseline as baseline_side
from benchmarks.latency import runner as runner_side
from benchmarks.latency.machine import machine_info
from benchmarks.latency.phase import PhaseResult, PhaseSettings, System, run_phase
from benchmarks.latency.plot import draw, latency_panels
from benchmarks.latency.progress import Progress
from benchmarks.latency.report import compare, evaluate_targets, format_report, write_json
from benchmarks.media.clip import ClipSpec
from benchmarks.media.looping_clip import LoopingClip
from ipc.shm import list_regions, parse_name, unlink_region

REPO = Path(__file__).resolve().parents[2]
INVERT_WORKFLOW: dict[str, Any] = {
    "1": {"class_type": "LoadTensor", "inputs": {}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveTensor", "inputs": {"images": ["2", 0]}},
}
CLIP_FPS = 30
# The source replays a clip of this length: a frame is told from those a loop before and after
# as long as its latency stays under half of it.
LOOP_SECONDS = 20.0
TAIL_S = 0.5  # the source's uncounted frames after the measured ones (``PhaseSettings.tail_s``)
LABELS = {"ours": "comfystream-byoc", "baseline": "pytrickle 0.1.6"}


@dataclass
class BenchConfig:
    """What ``python -m benchmarks.latency`` was asked to do."""

    streams: list[int] = field(default_factory=lambda: [1, 2, 4, 6, 8])
    duration_s: float = 30.0
    quick: bool = False
    device: str = "cpu"
    engine: str = "auto"
    infer_workers: str = "auto"  # the runner's --infer-workers
    baseline: bool = True
    json_path: Path = REPO / "benchmarks" / "results" / "latency.json"
    plot_path: Path = REPO / "benchmarks" / "results" / "latency.png"
    warmup_s: float = 1.0
    drop_threshold: float = 0.01
    latency_budget_ms: float = 100.0
    pytrickle_python: Path = field(default_factory=lambda: baseline_side.default_python(REPO))
    keep_logs: bool = False
    profile_dir: Path | None = None  # py-spy flame graphs of our runner's processes per phase
    progress: bool = True
    control_plane: str = "byoc"
    """How our runner's streams start: byoc (/ai/stream/start) or live-runner (app sessions)."""


def _preencode_clip(config: BenchConfig, path: Path) -> LoopingClip:
    """Encode the source clip once for every phase (a loop of at most ``LOOP_SECONDS``)."""
    needed_s = min(config.duration_s + TAIL_S, LOOP_SECONDS)
    clip = LoopingClip.encode(
        ClipSpec(width=512, height=512, fps=CLIP_FPS), round(needed_s * CLIP_FPS)
    )
    clip.save(path)
    return clip


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


async def _wait_gone(pids: set[int], timeout: float = 5.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        left = sorted(pid for pid in pids if _alive(pid))
        if not left or time.monotonic() > deadline:
            return left
        await asyncio.sleep(0.1)


def _leftover_segments(owner_pids: set[int]) -> list[str]:
    """Our runner's shared-memory segments still in /dev/shm, removed."""
    found = []
    for name in list_regions():
        parsed = parse_name(name)
        if parsed is not None and parsed.owner_pid in owner_pids:
            found.append(name)
            unlink_region(name)
    return found


async def run(config: BenchConfig) -> dict[str, Any]:
    """Run the benchmark; return the report (also written as JSON and PNG)."""
    started_at = datetime.now(timezone.utc)
    wall_start = time.monotonic()
    progress = Progress(enabled=config.progress)
    log_dir = Path(tempfile.mkdtemp(prefix="latency-bench-"))
    workspace = log_dir / "workspace"
    workspace.mkdir()
    notes: list[str] = []
    phases: list[PhaseResult] = []
    known_pids: set[int] = set()
    runner_pids: set[int] = set()
    info: dict[str, Any] = {
        "infer_device": None,
        "baseline_versions": None,
        "load_average_before": _load_average(),
    }
    failed = False
    use_baseline = config.baseline
    if use_baseline and not config.pytrickle_python.exists():
        notes.append(
            f"baseline skipped: {config.pytrickle_python} missing (make .venv-pytrickle/.installed)"
        )
        use_baseline = False
    orchestrator = runner = baseline = None
    try:
        async with aiohttp.ClientSession() as http:
            try:
                progress.update("starting the orchestrator stand-in", force=True)
                orchestrator = await runner_side.start_orchestrator(http, log_dir)
                known_pids.add(orchestrator.process.pid)
                progress.update(
                    "starting the runner" + (" and the baseline" if use_baseline else ""),
                    force=True,
                )
                runner_task = asyncio.create_task(
                    runner_side.start_runner(
                        http,
                        orchestrator,
                        log_dir,
                        capacity=max(config.streams),
                        device=config.device,
                        engine=config.engine,
                        infer_workers=config.infer_workers,
                        workspace=workspace,
                        control_plane=config.control_plane,
                    )
                )
                baseline_task = None
                if use_baseline:
                    baseline_task = asyncio.create_task(
                        baseline_side.start_baseline(
                            http,
                            orchestrator,
                            log_dir,
                            python=config.pytrickle_python,
                            count=max(config.streams),
                            device=config.device,
                        )
                    )
                try:
                    runner = await runner_task
                finally:
                    if baseline_task is not None:
                        baseline = await baseline_task
                        known_pids.update(p.pid for p in baseline.processes.values())
                health = await runner.health(http)
                runner_pids.update((await runner.pids(http)).values())
                known_pids.update(runner_pids)
                info["infer_device"] = runner_side.infer_device(health)
                info["workers"] = health.get("workers")
                if baseline is not None:
                    info["baseline_versions"] = baseline.versions
                if config.device == "cuda" and info["infer_device"] != "cuda":
                    notes.append(
                        f"--device cuda asked, but the runner's infer worker runs on "
                        f"{info['infer_device']!r}"
                    )
                progress.update("encoding the source clip", force=True)
                clip = await asyncio.to_thread(_preencode_clip, config, log_dir / "clip.msgpack")
                systems = _systems(http, runner, baseline, config.control_plane)
                for n in config.streams:
                    for system in systems:
                        settings = PhaseSettings(
                            streams=n,
                            duration_s=config.duration_s,
                            log_dir=log_dir,
                            warmup_s=config.warmup_s,
                            settle_s=0.3 if config.quick else 0.5,
                            drain_s=2.0 if config.quick else 3.0,
                            extra_pids={"bench-orchestrator": orchestrator.process.pid},
                            clip_path=log_dir / "clip.msgpack",
                            counter_period=clip.period,
                            profile_dir=config.profile_dir if system.name == "ours" else None,
                        )
                        result = await run_phase(http, orchestrator.url, system, settings, progress)
                        phases.append(result)
                        progress.done(_phase_line(result))
                        runner_pids.update((await runner.pids(http)).values())
                        known_pids.update(runner_pids)
            finally:
                progress.update("stopping", force=True)
                await _stop_all(baseline, runner, orchestrator)
    except BaseException:
        failed = True
        raise
    finally:
        left = await _wait_gone(known_pids)
        shm_left = _leftover_segments(runner_pids)
        cleanup = {"processes_left": left, "shm_segments_left": shm_left}
        if left:
            notes.append(f"processes still alive after the run: {left}")
        if shm_left:
            notes.append(f"runner left shared-memory segments (removed now): {shm_left}")
        errors = [p for p in phases if p.error]
        keep = config.keep_logs or failed or bool(errors) or bool(left) or bool(shm_left)
        if keep:
            notes.append(f"logs kept in {log_dir}")
        else:
            shutil.rmtree(log_dir, ignore_errors=True)
        if failed:
            print(f"latency benchmark: stopped; logs in {log_dir}", file=sys.stderr)

    info["load_average_after"] = _load_average()
    notes.extend(_schedule_notes(phases))
    report = _build_report(config, started_at, wall_start, phases, info, cleanup, notes)
    write_json(report, config.json_path)
    draw(latency_panels(_plot_data(phases)), config.plot_path)
    progress.done(f"done in {report['wall_s']:.1f} s: {config.json_path}, {config.plot_path}")
    print(format_report(report))
    return report


def _systems(
    http: aiohttp.ClientSession,
    runner: runner_side.Runner,
    baseline: baseline_side.Baseline | None,
    control_plane: str = "byoc",
) -> list[System]:
    async def our_pids(_streams: int) -> dict[str, int]:
        return await runner.pids(http)

    systems = [
        System(
            name="ours",
            label=LABELS["ours"],
            capability=lambda _k: runner_side.CAPABILITY,
            params={"workflow": INVERT_WORKFLOW},
            inverted=True,
            announces_ready=True,
            pids=our_pids,
            control_plane=control_plane,
        )
    ]
    if baseline is not None:

        async def baseline_pids(streams: int) -> dict[str, int]:
            return baseline.pids(streams)

        systems.append(
            System(
                name="baseline",
                label=LABELS["baseline"],
                capability=baseline_side.capability_name,
                # pytrickle caps input at 24 fps unless told otherwise: let it take all 30.
                params={"max_framerate": CLIP_FPS},
                inverted=True,
                announces_ready=False,
                pids=baseline_pids,
            )
        )
    return systems


async def _stop_all(
    baseline: baseline_side.Baseline | None,
    runner: runner_side.Runner | None,
    orchestrator: runner_side.Orchestrator | None,
) -> None:
    if baseline is not None:
        await baseline.stop()
    if runner is not None:
        await runner.process.stop(timeout=runner_side.STOP_TIMEOUT_S)
    if orchestrator is not None:
        await orchestrator.process.stop()


def _load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages: a busy machine explains noisy figures."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _schedule_notes(phases: list[PhaseResult]) -> list[str]:
    """Phases whose source fell behind its 30 fps schedule by more than a frame interval: the
    machine was too busy for the input to be real time there."""
    notes = []
    for phase in phases:
        worst = max((s.summary["source"]["max_lateness_ms"] for s in phase.per_stream), default=0.0)
        if worst > 1000.0 / CLIP_FPS:
            notes.append(
                f"{LABELS.get(phase.system, phase.system)} x{phase.streams}: the source fell "
                f"behind its schedule by up to {worst:.0f} ms (the machine was overloaded)"
            )
    return notes


def _phase_line(result: PhaseResult) -> str:
    label = f"{LABELS.get(result.system, result.system)} x{result.streams}"
    if result.error:
        return f"[{label}] error: {result.error}"
    s = result.summary
    g2g = s.get("glass_to_glass", {})
    return (
        f"[{label}] g2g p50 {g2g.get('p50', '-')} ms, p99 {g2g.get('p99', '-')} ms, "
        f"seen {s.get('frames_seen')}/{s.get('frames_sent')} frames"
    )


def _plot_data(phases: list[PhaseResult]) -> list[dict[str, Any]]:
    return [
        {
            "system": p.system,
            "streams": p.streams,
            "label": LABELS.get(p.system, p.system),
            "series": [s.series for s in p.per_stream],
            "stage_series": [s.stage_series for s in p.per_stream],
        }
        for p in phases
        if p.per_stream
    ]


def _build_report(
    config: BenchConfig,
    started_at: datetime,
    wall_start: float,
    phases: list[PhaseResult],
    info: dict[str, Any],
    cleanup: dict[str, Any],
    notes: list[str],
) -> dict[str, Any]:
    phase_docs = [p.to_json() for p in phases]
    comparison = compare(phase_docs, config.drop_threshold, config.latency_budget_ms)
    settings = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in asdict(config).items()
        if k not in ("progress",)
    }
    machine = machine_info(config.device)
    machine["infer_device"] = info.get("infer_device")
    machine["load_average_before"] = info.get("load_average_before")
    machine["load_average_after"] = info.get("load_average_after")
    return {
        "benchmark": "latency",
        "started_at": started_at.isoformat(timespec="seconds"),
        "wall_s": round(time.monotonic() - wall_start, 1),
        "command": sys.argv,
        "config": settings,
        "clip": {"width": 512, "height": 512, "fps": CLIP_FPS, "workflow": "invert"},
        "systems": dict(LABELS),
        "machine": machine,
        "runner_workers": info.get("workers"),
        "baseline_versions": info.get("baseline_versions"),
        "phases": phase_docs,
        "comparison": comparison,
        "targets": evaluate_targets(phase_docs, comparison),
        "cleanup": cleanup,
        "notes": notes,
        "definitions": {
            "glass_to_glass": "viewer decoded the frame - source had the frame (before encode)",
            "sent_to_decoded": "viewer decoded the frame - source sent its last byte",
            "runner_added": "glass_to_glass - source encode - viewer decode "
            "(last output byte in - last input byte out)",
            "drop_rate": "frames never seen at the viewer / frames sent",
            "drift": "least-squares slope of glass_to_glass over the run after the first second",
            "stages": "runner status events: median over 1 s report intervals of each "
            "interval's p50/p95/p99",
        },
    }
