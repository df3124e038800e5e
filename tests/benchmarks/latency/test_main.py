"""``python -m benchmarks.latency --quick``, the CI smoke, as a user runs it: the real runner
(``comfystream-byoc serve``), the stand-in and pytrickle as processes, real trickle traffic.
Checks that the run completes, measures through the whole path and cleans up — not speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from benchmarks.latency.__main__ import config_from_args
from benchmarks.latency.baseline import default_python
from benchmarks.latency.bench import REPO


def test_quick_is_one_short_stream_count() -> None:
    config = config_from_args(["--quick", "--streams", "1,2,4", "--duration", "30"])
    assert (config.streams, config.duration_s) == ([1], 3.0)
    config = config_from_args(["--streams", "4,1,2,2", "--json", "/tmp/x.json"])
    assert config.streams == [1, 2, 4] and config.plot_path == Path("/tmp/x.png")
    with pytest.raises(SystemExit):
        config_from_args(["--streams", "0,1"])


@pytest.mark.timeout(600)  # a hang guard: on a busy machine the run takes minutes
def test_quick_run_measures_the_full_path_and_leaves_nothing(tmp_path: Path) -> None:
    report_path = tmp_path / "latency.json"
    args = ["--quick", "--json", str(report_path), "--no-progress"]
    baseline = default_python(REPO).exists()
    if not baseline:
        args.append("--no-baseline")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.latency", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Targets (512x512 invert)" in done.stdout
    report = json.loads(report_path.read_text())
    phases = {p["system"]: p for p in report["phases"]}
    assert set(phases) == ({"ours", "baseline"} if baseline else {"ours"})
    for phase in phases.values():
        assert phase["error"] is None
        (stream,) = phase["per_stream"]
        assert stream["frames_sent"] == 90
        # Frames came through ingest, infer, egress and back. How many of the 90 depends on
        # how busy the machine is (the live policy drops what falls behind): the benchmark
        # reports that, the test does not judge it.
        assert stream["frames_seen"] > 0
        assert stream["sink"]["unreadable"] == 0  # every picture carried an inverted counter
        assert phase["summary"]["glass_to_glass"]["n"] > 0
    assert {"parent", "ingest", "infer", "egress"} <= set(phases["ours"]["cpu_percent"])
    assert report["machine"]["cpu_cores"] and report["machine"]["av"]
    assert len(report["targets"]) == 9
    # The benchmark measures its own processes too, apart from the system under test.
    for phase in phases.values():  # measured even though the source exits as the run ends
        assert isinstance(phase["cpu_percent"]["bench-source"], float)
        assert isinstance(phase["cpu_percent"]["bench-sink"], float)
    assert report["cleanup"] == {"processes_left": [], "shm_segments_left": []}
    with Image.open(tmp_path / "latency.png") as image:
        assert image.format == "PNG"
