"""CPU time from /proc: it grows with work, a gone process reads as None."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from benchmarks.latency.cpu import CpuWindow, cpu_seconds


def _spin(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_cpu_seconds_grow_with_work_done() -> None:
    before = cpu_seconds(os.getpid())
    assert before is not None
    _spin(0.3)
    after = cpu_seconds(os.getpid())
    assert after is not None and after - before >= 0.2


def test_gone_process_reads_none_and_window_reports_none_for_it() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert cpu_seconds(proc.pid) is None
    window = CpuWindow({"me": os.getpid(), "gone": proc.pid})
    window.start()
    _spin(0.2)
    window.stop()
    percent = window.percent()
    assert percent["gone"] is None
    me = percent["me"]
    # How much of a core we got depends on how busy the machine is; that we used some does not.
    assert me is not None and me > 0.0


def test_child_process_cpu_is_its_own() -> None:
    busy = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nend=time.process_time()+0.5\n"
            "while time.process_time()<end: pass\ntime.sleep(120)",
        ]
    )
    try:
        deadline = time.monotonic() + 60  # hang guard: a busy machine gives it little CPU
        used = 0.0
        while time.monotonic() < deadline:
            used = cpu_seconds(busy.pid) or 0.0
            if used >= 0.45:
                break
            time.sleep(0.05)
        assert used >= 0.45
    finally:
        busy.kill()
        busy.wait()
