"""One benchmark run: the bare relay and the runner, each with and without the complete-frame
jitter buffer, each with one publisher, first one viewer, then four.

Per system: start it, ``POST`` the WHIP offer, attach viewer 1 as soon as the session takes
viewers, note its first picture, let it settle, measure a window with 1 viewer, add 3 viewers,
let them settle, measure a window with 4. Latency is frame by frame from the counter: when the
publisher handed picture ``i`` to its encoder to when a viewer decoded picture ``i`` (one clock,
one process). CPU is per process over each window, from ``/proc``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from benchmarks.latency import runner as runner_side
from benchmarks.latency.cpu import CpuWindow
from benchmarks.latency.figures import percentiles
from benchmarks.latency.processes import ManagedProcess, free_port
from benchmarks.media.clip import ClipSpec
from benchmarks.webrtc.peers import Publisher, Viewer, loopback_candidates, whep_view, whip_publish
from ipc.shm import list_regions, parse_name, unlink_region

REPO = Path(__file__).resolve().parents[2]
SPEC = ClipSpec(width=512, height=512, fps=30, audio_channels=1)
INVERT = {
    "1": {"class_type": "LoadTensor", "inputs": {}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveTensor", "inputs": {"images": ["2", 0]}},
}
RELAY = "relay"
RELAY_EARLY = "relay-complete-frames"
RUNNER_EARLY = "runner"
RUNNER_AIORTC = "runner-aiortc-jb"
SYSTEMS = (RELAY, RELAY_EARLY, RUNNER_EARLY, RUNNER_AIORTC)
VIEWER_COUNTS = (1, 4)
START_TIMEOUT_S = 120.0
LATE_GRACE_S = 1.0  # how long a window's last frames may still take to arrive


@dataclass
class BenchConfig:
    window_s: float = 20.0
    settle_s: float = 3.0
    systems: tuple[str, ...] = SYSTEMS
    engine: str = "builtin"
    json_path: Path | None = None


@dataclass
class WindowResult:
    viewers: int
    latency_ms: dict[str, float | int]
    sent: int
    missing: int
    """Frames sent in the window that a viewer never showed, summed over viewers."""
    unreadable: int
    cpu_percent: dict[str, float | None]


@dataclass
class SystemResult:
    system: str
    first_frame_ms: float | None = None
    whip_answer_ms: float | None = None
    """WHIP ``POST`` to its 201."""
    whep_answer_ms: float | None = None
    """WHIP ``POST`` to the first viewer's 201 (a session takes viewers once it is live)."""
    windows: list[WindowResult] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)
    """The system's processes (and the harness), measured for CPU."""
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "first_frame_ms": self.first_frame_ms,
            "whip_answer_ms": self.whip_answer_ms,
            "whep_answer_ms": self.whep_answer_ms,
            "windows": [vars(w) for w in self.windows],
            "pids": self.pids,
            "error": self.error,
        }


class System:
    """What a phase talks to: its WHIP and WHEP URLs and the processes to measure."""

    name: str
    inverted: bool

    async def start(self, http: aiohttp.ClientSession, log_dir: Path) -> None:
        raise NotImplementedError

    def whip_url(self) -> str:
        raise NotImplementedError

    def whep_url(self, publisher: Publisher) -> str:
        raise NotImplementedError

    def base_url(self) -> str:
        raise NotImplementedError

    async def pids(self, http: aiohttp.ClientSession) -> dict[str, int]:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def unpublish(self, http: aiohttp.ClientSession, publisher: Publisher) -> None:
        """``DELETE`` the publisher's WHIP resource (what a WHIP client does on stop)."""
        if publisher.location:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.delete(f"{self.base_url()}{publisher.location}") as response:
                    await response.read()


class BareRelay(System):
    inverted = False

    def __init__(self, *, early_frames: bool = False) -> None:
        self.name = RELAY_EARLY if early_frames else RELAY
        self.early_frames = early_frames
        self.process: ManagedProcess | None = None
        self.url = ""

    async def start(self, http: aiohttp.ClientSession, log_dir: Path) -> None:
        port = free_port()
        self.process = ManagedProcess(
            "relay",
            [
                sys.executable,
                "-m",
                "benchmarks.webrtc.relay",
                "--port",
                str(port),
                *(["--early-frames"] if self.early_frames else []),
            ],
            log_path=log_dir / f"{self.name}.log",
            env={**os.environ, "PYTHONPATH": str(REPO)},
            cwd=REPO,
            stdout=True,
        )
        await self.process.start()
        await self.process.read_json_line(START_TIMEOUT_S)
        self.url = f"http://127.0.0.1:{port}"

    def base_url(self) -> str:
        return self.url

    def whip_url(self) -> str:
        return f"{self.url}/whip"

    def whep_url(self, publisher: Publisher) -> str:
        return f"{self.url}/whep"

    async def pids(self, http: aiohttp.ClientSession) -> dict[str, int]:
        assert self.process is not None
        return {"relay": self.process.pid}

    async def stop(self) -> None:
        if self.process is not None:
            await self.process.stop()


class Runner(System):
    inverted = True

    def __init__(self, *, early_frames: bool, engine: str) -> None:
        self.name = RUNNER_EARLY if early_frames else RUNNER_AIORTC
        self.early_frames = early_frames
        self.engine = engine
        self.runner: runner_side.Runner | None = None

    async def start(self, http: aiohttp.ClientSession, log_dir: Path) -> None:
        workspace = log_dir / "workspace"
        workspace.mkdir(exist_ok=True)
        self.runner = await runner_side.start_runner(
            http,
            None,
            log_dir,
            capacity=1,
            device="cpu",
            engine=self.engine,
            workspace=workspace,
            capability="whip-ingest",
            extra_args=[
                "--webrtc-host-addresses",
                "127.0.0.1",
                "--webrtc-early-frames",
                "true" if self.early_frames else "false",
            ],
        )

    def base_url(self) -> str:
        assert self.runner is not None
        return self.runner.url

    def whip_url(self) -> str:
        assert self.runner is not None
        query = f"width={SPEC.width}&height={SPEC.height}&workflow={quote(json.dumps(INVERT))}"
        return f"{self.runner.url}/whip?{query}"

    def whep_url(self, publisher: Publisher) -> str:
        assert self.runner is not None
        session_id = publisher.location.rsplit("/", 1)[-1]
        return f"{self.runner.url}/byoc/whep/{session_id}"

    async def pids(self, http: aiohttp.ClientSession) -> dict[str, int]:
        assert self.runner is not None
        return await self.runner.pids(http)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.process.stop(timeout=runner_side.STOP_TIMEOUT_S)


def make_system(name: str, engine: str) -> System:
    if name in (RELAY, RELAY_EARLY):
        return BareRelay(early_frames=name == RELAY_EARLY)
    return Runner(early_frames=name == RUNNER_EARLY, engine=engine)


async def _until(check: Any, timeout_s: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not check():
        if loop.time() > deadline:
            raise TimeoutError(f"{what} within {timeout_s:g}s")
        await asyncio.sleep(0.01)


def window_figures(
    viewers: list[Viewer], publisher: Publisher, start: float, end: float
) -> tuple[list[float], int, int]:
    """Latencies (ms) of the frames sent in ``[start, end)``, how many were sent then, and how
    many of them each viewer missed (summed)."""
    sent_at = publisher.source.sent_at
    indices = [i for i, t in enumerate(sent_at) if start <= t < end]
    latencies: list[float] = []
    missing = 0
    for viewer in viewers:
        for i in indices:
            arrived = viewer.arrivals.get(i)
            if arrived is None:
                missing += 1
            else:
                latencies.append((arrived - sent_at[i]) * 1000.0)
    return latencies, len(indices), missing


async def measure(
    http: aiohttp.ClientSession,
    system: System,
    pids: dict[str, int],
    viewers: list[Viewer],
    publisher: Publisher,
    window_s: float,
) -> WindowResult:
    cpu = CpuWindow(pids)
    unreadable_before = sum(v.unreadable for v in viewers)
    cpu.start()
    start = time.monotonic()
    await asyncio.sleep(window_s)
    end = time.monotonic()
    cpu.stop()
    await asyncio.sleep(LATE_GRACE_S)  # the window's last frames are still on their way
    latencies, sent, missing = window_figures(viewers, publisher, start, end)
    return WindowResult(
        viewers=len(viewers),
        latency_ms=percentiles(latencies),
        sent=sent,
        missing=missing,
        unreadable=sum(v.unreadable for v in viewers) - unreadable_before,
        cpu_percent=cpu.percent(),
    )


async def run_system(
    http: aiohttp.ClientSession, system: System, config: BenchConfig, log_dir: Path
) -> SystemResult:
    result = SystemResult(system.name)
    publisher: Publisher | None = None
    viewers: list[Viewer] = []
    try:
        await system.start(http, log_dir)
        pids = result.pids = {**await system.pids(http), "harness": os.getpid()}
        publisher = await whip_publish(http, system.whip_url(), SPEC)

        async def add_viewer() -> Viewer:
            assert publisher is not None
            viewer = await whep_view(
                http,
                system.whep_url(publisher),
                publisher.source,
                inverted=system.inverted,
                timeout_s=START_TIMEOUT_S,
            )
            viewers.append(viewer)
            return viewer

        first = await add_viewer()
        await _until(lambda: first.arrivals, START_TIMEOUT_S, f"{system.name}: no frame")
        first_at = first.first_arrival()
        assert first_at is not None
        since_post = lambda t: round((t - publisher.posted_at) * 1000.0, 1)  # noqa: E731
        result.first_frame_ms = since_post(first_at)
        result.whip_answer_ms = since_post(publisher.answered_at)
        result.whep_answer_ms = since_post(first.answered_at) if first.answered_at else None
        for count in VIEWER_COUNTS:
            while len(viewers) < count:
                await add_viewer()
            for viewer in viewers:
                await _until(lambda v=viewer: v.arrivals, START_TIMEOUT_S, "a viewer got nothing")
            await asyncio.sleep(config.settle_s)
            result.windows.append(
                await measure(http, system, pids, viewers, publisher, config.window_s)
            )
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        for viewer in viewers:
            await viewer.close()
        if publisher is not None:
            await system.unpublish(http, publisher)
            await publisher.pc.close()
        await system.stop()
    return result


def _leftover_segments(owner_pids: set[int]) -> list[str]:
    """Shared-memory segments of the runner's processes still in /dev/shm (removed)."""
    found = []
    for name in list_regions():
        parsed = parse_name(name)
        if parsed is not None and parsed.owner_pid in owner_pids:
            found.append(name)
            unlink_region(name)
    return found


async def run(config: BenchConfig) -> dict[str, Any]:
    """Every system in turn; returns the report document (see ``benchmarks.webrtc.report``)."""
    from benchmarks.webrtc.report import evaluate_targets

    log_dir = Path(tempfile.mkdtemp(prefix="webrtc-bench-"))
    results: list[SystemResult] = []
    load_before = os.getloadavg()
    owner_pids: set[int] = set()
    with loopback_candidates():
        async with aiohttp.ClientSession() as http:
            for name in config.systems:
                system = make_system(name, config.engine)
                results.append(await run_system(http, system, config, log_dir))
                if isinstance(system, Runner) and system.runner is not None:
                    owner_pids.add(system.runner.process.pid)
    systems = [r.to_json() for r in results]
    return {
        "spec": {"width": SPEC.width, "height": SPEC.height, "fps": SPEC.fps},
        "window_s": config.window_s,
        "settle_s": config.settle_s,
        "engine": config.engine,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "cpu_cores": os.cpu_count(),
        "systems": systems,
        "targets": evaluate_targets(systems),
        "shm_segments_left": _leftover_segments(owner_pids),
        "logs": str(log_dir),
    }
