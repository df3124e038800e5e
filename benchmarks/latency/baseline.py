"""The baseline side: pytrickle 0.1.6's ``StreamProcessor`` with an invert handler
(``pytrickle_invert.py``), one process per concurrent stream (pytrickle serves one stream at a
time), each registered with the same orchestrator stand-in as capability
``pytrickle-invert-<k>``, as a pytrickle-based runner registers itself."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.latency.gateway import register_capability
from benchmarks.latency.processes import ManagedProcess
from benchmarks.latency.runner import Orchestrator, runner_environment

DRIVER = Path(__file__).with_name("pytrickle_invert.py")
READY_TIMEOUT_S = 120.0


def capability_name(index: int) -> str:
    return f"pytrickle-invert-{index}"


def default_python(repo: Path) -> Path:
    """The pytrickle environment's interpreter (made by ``make .venv-pytrickle/.installed``)."""
    return repo / ".venv-pytrickle" / "bin" / "python"


@dataclass
class Baseline:
    """The running pytrickle processes, by capability name."""

    processes: dict[str, ManagedProcess] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)

    def pids(self, count: int) -> dict[str, int]:
        """Pids of the processes serving the first ``count`` streams."""
        names = [capability_name(k) for k in range(count)]
        return {name: self.processes[name].pid for name in names}

    async def stop(self) -> None:
        await asyncio.gather(*(p.stop() for p in self.processes.values()))


async def start_baseline(
    http: aiohttp.ClientSession,
    orchestrator: Orchestrator,
    log_dir: Path,
    *,
    python: Path,
    count: int,
    device: str,
) -> Baseline:
    """Start ``count`` pytrickle processes and register them; stop them all if one fails."""
    baseline = Baseline()
    for index in range(count):
        name = capability_name(index)
        baseline.processes[name] = ManagedProcess(
            name,
            [str(python), str(DRIVER), "--device", device],
            log_path=log_dir / f"{name}.log",
            env=runner_environment(device),
            stdout=True,
        )
    try:
        await asyncio.gather(*(p.start() for p in baseline.processes.values()))
        for name, process in baseline.processes.items():
            ready = await process.read_json_line(READY_TIMEOUT_S)
            port = ready.get("port")
            if not isinstance(port, int):
                raise RuntimeError(f"{name}: unexpected ready line {ready!r}")
            versions = ready.get("versions")
            if isinstance(versions, dict):
                baseline.versions = versions
            await register_capability(
                http,
                orchestrator.url,
                name=name,
                url=f"http://127.0.0.1:{port}",
                secret=orchestrator.secret,
            )
    except BaseException:
        await baseline.stop()
        raise
    return baseline
