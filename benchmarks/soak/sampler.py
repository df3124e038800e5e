"""Resource samples of the runner's processes, read from ``/proc`` every interval: resident
memory, open file descriptors and threads of the parent and of each worker (by name, so a
restarted worker continues its series under a new pid, which the sample records)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since sampling started
    process: str
    pid: int
    rss_bytes: int
    fds: int
    threads: int


def read_process(pid: int) -> tuple[int, int, int] | None:
    """(resident bytes, open fds, threads) of ``pid``; None when it is gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            rss = int(statm.read().split()[1]) * _PAGE_SIZE
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        with open(f"/proc/{pid}/status", "rb") as status:
            threads = next(int(line.split()[1]) for line in status if line.startswith(b"Threads:"))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return rss, fds, threads


@dataclass
class Sampler:
    """Samples ``pids()`` (name -> pid, re-read each time) every ``interval_s``."""

    pids: Callable[[], Awaitable[dict[str, int]]]
    interval_s: float
    samples: list[Sample] = field(default_factory=list)
    extra: list[Callable[[float], Awaitable[None]]] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _t0: float = 0.0

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._task = asyncio.create_task(self._run(), name="soak-sampler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def elapsed(self) -> float:
        """Seconds since sampling started (the time base of every sample)."""
        return time.monotonic() - self._t0

    async def sample_once(self) -> None:
        t = self.elapsed()
        for name, pid in sorted((await self.pids()).items()):
            figures = read_process(pid)
            if figures is not None:
                self.samples.append(Sample(round(t, 2), name, pid, *figures))
        for hook in self.extra:
            await hook(t)

    async def _run(self) -> None:
        next_at = time.monotonic()
        while True:
            try:
                await self.sample_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a failed sample is a gap, not the end of the run
                print(f"soak: sample failed: {exc!r}")
            next_at += self.interval_s
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
