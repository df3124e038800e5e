"""The baseline end to end: pytrickle's own StreamProcessor (in its own environment, as its own
process) registered with the orchestrator stand-in (``comfystream-byoc orchestrator``, its own
process), one stream started as a gateway starts it, the clip sent in real time and read back
inverted from the output. Checks the benchmark's machinery, not the baseline's speed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from benchmarks.latency import baseline as baseline_side
from benchmarks.latency import runner as runner_side
from benchmarks.latency.bench import REPO, _alive
from benchmarks.latency.phase import PhaseSettings, System, run_phase
from benchmarks.latency.progress import Progress

PYTHON = baseline_side.default_python(REPO)

pytestmark = pytest.mark.skipif(not PYTHON.exists(), reason="no .venv-pytrickle")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_one_stream_through_pytrickle_via_the_stand_in(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    orchestrator = await runner_side.start_orchestrator(http, tmp_path)
    pids = {orchestrator.process.pid}
    try:
        baseline = await baseline_side.start_baseline(
            http, orchestrator, tmp_path, python=PYTHON, count=1, device="cpu"
        )
        pids |= {p.pid for p in baseline.processes.values()}
        try:

            async def baseline_pids(streams: int) -> dict[str, int]:
                return baseline.pids(streams)

            system = System(
                name="baseline",
                label="pytrickle",
                capability=baseline_side.capability_name,
                params={"max_framerate": 30},
                inverted=True,
                announces_ready=False,
                pids=baseline_pids,
            )
            settings = PhaseSettings(streams=1, duration_s=2.0, log_dir=tmp_path, drain_s=2.0)
            result = await run_phase(
                http, orchestrator.url, system, settings, Progress(enabled=False)
            )
        finally:
            await baseline.stop()
    finally:
        await orchestrator.process.stop()

    assert result.error is None, result.error
    assert baseline.versions.get("pytrickle") == "0.1.6"
    (stream,) = result.per_stream
    summary = stream.summary
    assert summary["frames_sent"] == 60
    # Frames come back, read as inverted (how many depends on the machine's load).
    assert summary["frames_seen"] > 0
    assert summary["sink"]["unreadable"] == 0
    assert summary["sink"]["out_of_order"] == 0
    assert summary["first_output_ms"] is not None
    assert result.summary["glass_to_glass"]["n"] > 0
    cpu = result.cpu["pytrickle-invert-0"]
    assert cpu is not None and cpu > 0
    assert not [pid for pid in pids if _alive(pid)]
