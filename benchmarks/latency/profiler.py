"""py-spy on the runner's processes while a phase's frames flow (``--profile DIR``).

One ``py-spy record --pid`` per process (parent and each worker), sampling without pausing the
process (``--nonblocking``), idle threads left out, so a frame's share of the samples is its
share of the process's busy time. Per process it leaves the collapsed stacks (``.txt``), a flame
graph (``.svg``) and the top frames (``.top.txt``) under ``DIR``. py-spy needs ptrace rights
over the runner (root, or ``kernel.yama.ptrace_scope=0``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from benchmarks.latency.flamegraph import parse_collapsed, render_svg, top_frames

log = logging.getLogger(__name__)

LOOP_FRAME = "run (asyncio/runners.py"  # where a worker's event loop runs (asyncio or uvloop)


def py_spy_path() -> str | None:
    """py-spy beside this interpreter, else on ``PATH``."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class PhaseProfiler:
    """Samples ``pids`` for ``duration_s`` and summarises what it saw (see the module docstring)."""

    def __init__(
        self, out_dir: Path, label: str, pids: dict[str, int], duration_s: float, rate: int = 100
    ) -> None:
        self.out_dir = out_dir
        self.label = label
        self.pids = pids
        self.duration_s = duration_s
        self.rate = rate
        self._running: dict[str, asyncio.subprocess.Process] = {}

    async def start(self) -> None:
        """Attach py-spy to every process (raises when py-spy is not installed)."""
        binary = py_spy_path()
        if binary is None:
            raise RuntimeError("py-spy is not installed (pip install py-spy, see the README)")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, pid in self.pids.items():
            command = [
                binary,
                "record",
                "--pid",
                str(pid),
                "--format",
                "raw",
                "--function",
                "--nonblocking",
                "--rate",
                str(self.rate),
                "--duration",
                str(math.ceil(self.duration_s)),
                "--output",
                str(self._path(name, ".txt")),
            ]
            self._running[name] = await asyncio.create_subprocess_exec(
                *command,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )

    async def stop(self, timeout_s: float = 30.0) -> dict[str, Any]:
        """Wait for the recordings (SIGINT makes py-spy write what it has), then summarise:
        ``{process: {"samples", "busy", "top": [[frame, own, total], ...]}}``."""
        summary: dict[str, Any] = {}
        for name, process in self._running.items():
            try:
                await asyncio.wait_for(process.wait(), timeout_s)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGINT)
                try:
                    await asyncio.wait_for(process.wait(), 10.0)
                except asyncio.TimeoutError:
                    process.kill()
                    await process.wait()
            if process.stderr is not None:
                error = (await process.stderr.read()).decode(errors="replace").strip()
                if process.returncode and error:
                    log.warning("py-spy on %s: %s", name, error.splitlines()[-1])
            summary[name] = self._summarise(name)
        self._running.clear()
        return summary

    def _summarise(self, name: str) -> dict[str, Any]:
        raw = self._path(name, ".txt")
        if not raw.exists():
            return {"samples": 0, "error": "no recording"}
        stacks = parse_collapsed(raw.read_text(encoding="utf-8", errors="replace"))
        samples = sum(stacks.values())
        title = f"{self.label} {name}"
        self._path(name, ".svg").write_text(render_svg(stacks, title), encoding="utf-8")
        # py-spy's --nonblocking sampling takes a thread in the loop's epoll wait for a running
        # one: samples that end in the loop's own frame are mostly waiting. The top frames are
        # shares of the other samples, the Python work.
        in_loop = sum(n for stack, n in stacks.items() if stack[-1].startswith(LOOP_FRAME))
        work = {s: n for s, n in stacks.items() if not s[-1].startswith(LOOP_FRAME)}
        top = top_frames(work)
        lines = [
            f"{title}: {samples} samples, {in_loop} in the event loop's own frame (mostly its "
            f"wait) left out; shares of the other {samples - in_loop}: own% total% frame"
        ]
        lines += [f"{100 * t.own:5.1f} {100 * t.total:5.1f}  {t.frame}" for t in top]
        self._path(name, ".top.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return {
            "samples": samples,
            "event_loop_samples": in_loop,
            "top": [[t.frame, round(t.own, 4), round(t.total, 4)] for t in top],
        }

    def _path(self, name: str, suffix: str) -> Path:
        return self.out_dir / f"{self.label}-{name}{suffix}"
