"""py-spy attached to a real busy Python process: the recording ends on time and is summarised
into collapsed stacks, a flame graph and the top frames. Skipped without py-spy or the ptrace
rights it needs."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from benchmarks.latency.profiler import PhaseProfiler, py_spy_path

BUSY = """
import time
def spin_in_a_named_function():
    end = time.monotonic() + 60
    while time.monotonic() < end:
        sum(range(1000))
print("ready", flush=True)
spin_in_a_named_function()
"""


def _can_trace() -> bool:
    if py_spy_path() is None:
        return False
    try:
        scope = Path("/proc/sys/kernel/yama/ptrace_scope").read_text().strip()
    except OSError:
        scope = "0"
    return os.geteuid() == 0 or scope == "0"


@pytest.mark.skipif(not _can_trace(), reason="py-spy missing or no ptrace rights")
@pytest.mark.timeout(120)
async def test_a_busy_process_is_profiled_and_summarised(tmp_path: Path) -> None:
    busy = await asyncio.create_subprocess_exec(
        sys.executable, "-c", BUSY, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert busy.stdout is not None
        assert (await asyncio.wait_for(busy.stdout.readline(), 60)).strip() == b"ready"
        profiler = PhaseProfiler(tmp_path, "ours-x1", {"busy": busy.pid}, duration_s=2.0)
        await profiler.start()
        summary = await asyncio.wait_for(profiler.stop(), 60)  # hang guard
    finally:
        busy.kill()
        await busy.wait()
    found = summary["busy"]
    assert found["samples"] > 0
    assert any("spin_in_a_named_function" in frame for frame, _own, total in found["top"])
    for suffix in (".txt", ".svg", ".top.txt"):
        assert (tmp_path / f"ours-x1-busy{suffix}").stat().st_size > 0
    assert "<svg" in (tmp_path / "ours-x1-busy.svg").read_text()
