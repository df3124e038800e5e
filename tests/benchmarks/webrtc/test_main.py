"""``python -m benchmarks.webrtc --quick``, the CI smoke, as a user runs it: the bare relay and
the runner (``comfystream-byoc serve`` and its workers) as processes, aiortc peers over real
sockets. Checks that every row is measured and nothing is left behind, not speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.webrtc.__main__ import config_from_args
from benchmarks.webrtc.bench import RELAY, RELAY_EARLY, REPO, RUNNER_AIORTC, RUNNER_EARLY


def test_quick_shortens_the_windows_and_systems_can_be_picked() -> None:
    config = config_from_args(["--quick", "--window", "30"])
    assert (config.window_s, config.settle_s) == (1.5, 0.5)
    assert config.systems == (RELAY, RUNNER_EARLY)
    assert config_from_args([]).systems == (RELAY, RELAY_EARLY, RUNNER_EARLY, RUNNER_AIORTC)
    assert config_from_args(["--systems", "relay,runner"]).systems == (RELAY, RUNNER_EARLY)
    with pytest.raises(SystemExit):
        config_from_args(["--systems", "relay,nginx"])


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        return False


@pytest.mark.timeout(600)  # a hang guard: on a busy machine the run takes minutes
def test_quick_run_measures_every_row_and_leaves_nothing(tmp_path: Path) -> None:
    report_path = tmp_path / "webrtc.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.webrtc", "--quick", "--json", str(report_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for heading in ("WebRTC glass-to-glass", "CPU per process", "Targets"):
        assert heading in done.stdout
    report = json.loads(report_path.read_text())
    systems = {s["system"]: s for s in report["systems"]}
    assert set(systems) == {RELAY, RUNNER_EARLY}
    for system in systems.values():
        assert system["error"] is None
        assert system["first_frame_ms"] is not None
        assert [w["viewers"] for w in system["windows"]] == [1, 4]
        for window in system["windows"]:
            # Frames went through and were read back; how many depends on the machine's load.
            assert window["latency_ms"]["n"] > 0
            assert window["sent"] > 0
            assert window["cpu_percent"]["harness"] is not None
    runner_processes = set(systems[RUNNER_EARLY]["windows"][0]["cpu_percent"])
    assert {"parent", "ingest", "infer", "egress"} <= runner_processes
    assert "relay" in systems[RELAY]["windows"][0]["cpu_percent"]
    assert [t["result"] in ("pass", "fail") for t in report["targets"]] == [True] * 3
    assert report["shm_segments_left"] == []
    left = [
        pid
        for s in systems.values()
        for name, pid in s["pids"].items()
        if name != "harness" and _alive(pid)
    ]
    assert left == [], f"processes left running: {left}"
