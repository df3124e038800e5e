"""CPU time per process from ``/proc/<pid>/stat`` (user + system, all threads), as % of a core."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds ``pid`` has used so far (every thread), or ``None`` when the
    process is gone or ``/proc`` is unavailable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            raw = stat.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    except (IndexError, ValueError):
        return None
    return (utime + stime) / CLOCK_TICKS


@dataclass
class CpuWindow:
    """CPU use of named processes between ``start()`` and ``stop()``."""

    pids: dict[str, int]
    started_at: float = 0.0
    stopped_at: float = 0.0
    _start: dict[str, float | None] = field(default_factory=dict)
    _stop: dict[str, float | None] = field(default_factory=dict)

    def start(self) -> None:
        self.started_at = time.monotonic()
        self._start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def stop(self) -> None:
        self.stopped_at = time.monotonic()
        self._stop = {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def percent(self) -> dict[str, float | None]:
        """Per process: CPU time over wall time in % of one core (``None`` if the process
        was not there at both ends, e.g. a worker that restarted)."""
        wall = self.stopped_at - self.started_at
        out: dict[str, float | None] = {}
        for name in self.pids:
            first, last = self._start.get(name), self._stop.get(name)
            if first is None or last is None or wall <= 0:
                out[name] = None
            else:
                out[name] = round(100.0 * (last - first) / wall, 1)
        return out
