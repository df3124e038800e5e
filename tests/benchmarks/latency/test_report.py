"""The report: ratios against the baseline, targets, the JSON file, the tables and the PNG."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image

from benchmarks.latency.plot import draw, latency_panels
from benchmarks.latency.report import (
    compare,
    cpu_ms_per_frame,
    evaluate_targets,
    format_report,
    harness_cpu,
    total_cpu,
    write_json,
)


def phase(
    system: str,
    streams: int,
    *,
    p50: float,
    p99: float,
    drop_rate: float,
    cpu: dict[str, float | None],
    error: str | None = None,
) -> dict[str, Any]:
    missing = round(drop_rate * 900 * streams)
    if error is not None:  # a failed phase has no figures
        return {
            "system": system,
            "streams": streams,
            "error": error,
            "cpu_percent": {},
            "per_stream": [],
            "summary": {},
        }
    return {
        "system": system,
        "streams": streams,
        "error": error,
        "cpu_percent": cpu,
        "per_stream": [],
        "summary": {
            "glass_to_glass": {"n": 870, "p50": p50, "p95": p99 * 0.8, "p99": p99},
            "runner_added": {"n": 870, "p50": p50 / 3, "p95": p50 / 2, "p99": p50},
            "encode": {"n": 870, "p50": 1.0},
            "decode": {"n": 870, "p50": 0.5},
            "frames_sent": 900 * streams,
            "frames_missing": missing,
            "runner_dropped": {"infer.infer_behind": missing},
            "drop_rate": drop_rate,
            "first_output_ms": 120.0,
            "fps_out_per_stream": 30.0,
            "drift_ms_per_min": 0.2,
            "stages": {"decode": {"p50": 0.8, "p95": 1.2, "p99": 2.0, "worst_p99": 3.0}},
        },
    }


PHASES = [
    phase(
        "ours",
        1,
        p50=12.0,
        p99=25.0,
        drop_rate=0.0,
        cpu={"parent": 2.0, "infer": 20.0, "bench-sink": 5.0},
    ),
    phase("baseline", 1, p50=48.0, p99=80.0, drop_rate=0.0, cpu={"pytrickle-invert-0": 44.0}),
    phase("ours", 2, p50=13.0, p99=28.0, drop_rate=0.0, cpu={"parent": 3.0, "infer": 40.0}),
    phase(
        "baseline",
        2,
        p50=60.0,
        p99=200.0,
        drop_rate=0.2,
        cpu={"pytrickle-invert-0": 50.0, "pytrickle-invert-1": 50.0},
    ),
    phase("ours", 4, p50=15.0, p99=35.0, drop_rate=0.0, cpu={"parent": 4.0, "infer": 80.0}),
    phase("baseline", 4, p50=0.0, p99=0.0, drop_rate=0.5, cpu={}, error="RuntimeError: boom"),
]


def test_comparison_ratios_and_stream_limits() -> None:
    comparison = compare(PHASES, drop_threshold=0.01)
    one = comparison["by_streams"]["1"]
    assert one["g2g_p50_ratio"] == 0.25
    assert one["g2g_p99_ratio"] == round(25 / 80, 3)
    assert one["cpu_ratio"] == round(22 / 44, 3)  # the benchmark's own processes left out
    assert "4" not in comparison["by_streams"]  # the baseline phase at 4 failed
    limits = comparison["streams_without_drops"]
    assert limits["ours"] == {"max_streams": 4, "first_dropping_at": None}
    assert limits["baseline"] == {"max_streams": 1, "first_dropping_at": 2}
    assert comparison["streams_ratio"] == {"ratio": 4.0, "bound": "lower"}
    # Within a 100 ms p99 as well: the baseline's 2-stream phase is also too late (200 ms).
    assert comparison["streams_within_budget"]["baseline"]["max_streams"] == 1
    tight = compare(PHASES, drop_threshold=0.01, latency_budget_ms=26.0)
    assert tight["streams_within_budget"]["ours"] == {"max_streams": 1, "first_dropping_at": 2}


def test_cpu_per_frame_and_its_ratio_come_from_cpu_and_frames_out() -> None:
    comparison = compare(PHASES, drop_threshold=0.01)
    one = comparison["by_streams"]["1"]
    # ours: 22 % of a core for 30 frames/s = 7.333 ms a frame; the baseline's 44 % -> 14.667.
    assert one["cpu_ms_per_frame"] == {"ours": 7.333, "baseline": 14.667}
    assert one["cpu_per_frame_ratio"] == 0.5
    two = comparison["by_streams"]["2"]
    # ours x2: 43 % for 60 frames/s; the baseline's 100 % for 60 frames/s.
    assert two["cpu_ms_per_frame"] == {"ours": 7.167, "baseline": 16.667}
    assert two["cpu_per_frame_ratio"] == round(7.167 / 16.667, 3)
    assert cpu_ms_per_frame(PHASES[0]) == 7.333
    slow = phase("ours", 2, p50=1, p99=2, drop_rate=0.0, cpu={"infer": 60.0})
    slow["summary"]["fps_out_per_stream"] = 15.0  # half the frames out: twice the CPU per frame
    assert cpu_ms_per_frame(slow) == 20.0
    slow["summary"]["fps_out_per_stream"] = None
    assert cpu_ms_per_frame(slow) is None


def test_harness_cpu_is_the_benchmarks_own_processes() -> None:
    assert harness_cpu({"parent": 2.0, "bench-sink": 5.0, "bench-source": 1.5}) == 6.5
    assert harness_cpu({"parent": 2.0}) is None
    assert total_cpu({"parent": 2.0, "infer": 20.0, "bench-sink": 5.0}) == 22.0


def _targets(phases: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {t["target"]: t for t in evaluate_targets(phases, compare(phases, 0.01))}


G2G_P50 = "glass-to-glass p50, 1 stream, after 1 s"
G2G_P99 = "glass-to-glass p99, 1 stream, after 1 s"
ADDED = "runner-added latency p50, 1 stream"
DROPS = "frames dropped at 30 fps, 1 stream (issue: over 60 s)"
FIRST = "first output frame after first input frame"
STREAMS = "streams vs baseline at <= drop threshold and g2g p99 <= budget"
CPU_1 = "CPU per frame vs baseline, 1 stream"
CPU_4 = "CPU per frame vs baseline, 4 streams"


def test_targets_hold_the_issues_limits() -> None:
    fast = [
        phase("ours", 1, p50=7.9, p99=16.0, drop_rate=0.0, cpu={"infer": 10.0}),
        phase("baseline", 1, p50=40, p99=50, drop_rate=0.0, cpu={"pytrickle-invert-0": 20.0}),
        phase("ours", 4, p50=9.0, p99=40.0, drop_rate=0.0, cpu={"infer": 70.0}),
        phase("baseline", 4, p50=45, p99=90, drop_rate=0.05, cpu={"pytrickle-invert-0": 100.0}),
    ]
    fast[0]["summary"]["runner_added"]["p50"] = 3.0
    fast[0]["summary"]["first_output_ms"] = 100.0
    results = _targets(fast)
    assert {k: v["result"] for k, v in results.items()} == {
        G2G_P50: "pass",
        G2G_P99: "pass",
        FIRST: "pass",
        DROPS: "pass",
        ADDED: "pass",
        "latency drift, 1 stream": "pass",
        # ours held 4 (never failing), the baseline 1 (it dropped 5 % at 4): at least 4x.
        STREAMS: "pass",
        CPU_1: "pass",  # 0.5x
        CPU_4: "fail",  # 70 / 100 = 0.7x
    }
    assert results[CPU_1]["measured"] == 0.5 and results[CPU_1]["limit"] == "<= 0.6 x"
    assert results[CPU_4]["measured"] == 0.7
    assert results[STREAMS]["measured"] == 4.0 and results[STREAMS]["limit"] == ">= 2 x"
    assert results[G2G_P50]["limit"] == "<= 8 ms" and results[G2G_P99]["limit"] == "<= 16 ms"


def test_targets_fail_past_the_limits() -> None:
    slow = [
        phase("ours", 1, p50=8.1, p99=16.5, drop_rate=0.01, cpu={"infer": 30.0}),
        phase("baseline", 1, p50=40, p99=50, drop_rate=0.0, cpu={"pytrickle-invert-0": 20.0}),
    ]
    slow[0]["summary"]["runner_added"]["p50"] = 3.1
    slow[0]["summary"]["first_output_ms"] = 101.0
    results = {k: v["result"] for k, v in _targets(slow).items()}
    for name in (G2G_P50, G2G_P99, ADDED, FIRST, DROPS, CPU_1):
        assert results[name] == "fail", name
    assert results[STREAMS] == "n/a"  # ours failed at its smallest count: nothing to compare
    assert results[CPU_4] == "n/a"  # no 4-stream phase


def test_the_streams_target_counts_latency_as_well_as_drops() -> None:
    # The baseline never drops but its p99 passes 100 ms at 2 streams; ours holds both to 2.
    queueing = [
        phase("ours", 1, p50=8, p99=15, drop_rate=0.0, cpu={}),
        phase("baseline", 1, p50=40, p99=60, drop_rate=0.0, cpu={}),
        phase("ours", 2, p50=8, p99=20, drop_rate=0.0, cpu={}),
        phase("baseline", 2, p50=90, p99=150, drop_rate=0.0, cpu={}),
        phase("ours", 4, p50=9, p99=60, drop_rate=0.02, cpu={}),
        phase("baseline", 4, p50=300, p99=900, drop_rate=0.0, cpu={}),
    ]
    comparison = compare(queueing, 0.01)
    # By drops alone ours is behind (2 streams against at least 4)...
    assert comparison["streams_ratio"] == {"ratio": 0.5, "bound": "upper"}
    # ...but the baseline held its latency budget at 1 stream only.
    assert comparison["streams_within_budget_ratio"] == {"ratio": 2.0, "bound": "exact"}
    assert _targets(queueing)[STREAMS]["result"] == "pass"


def test_neither_side_dropping_is_inconclusive() -> None:
    calm = [
        phase("ours", 1, p50=10, p99=20, drop_rate=0.0, cpu={}),
        phase("baseline", 1, p50=40, p99=60, drop_rate=0.0, cpu={}),
    ]
    comparison = compare(calm, 0.01)
    assert comparison["streams_ratio"]["ratio"] is None
    assert _targets(calm)[STREAMS]["result"] == "n/a"


def _report() -> dict[str, Any]:
    comparison = compare(PHASES, 0.01)
    return {
        "systems": {"ours": "comfystream-byoc", "baseline": "pytrickle 0.1.6"},
        "phases": PHASES,
        "comparison": comparison,
        "targets": evaluate_targets(PHASES, comparison),
        "notes": ["a note"],
    }


def test_terminal_tables_name_every_phase_stage_and_target() -> None:
    text = format_report(_report())
    assert "comfystream-byoc x4" in text and "pytrickle 0.1.6 x2" in text
    assert "RuntimeError: boom" in text
    assert "12.0/20.0/25.0" in text  # g2g p50/p95/p99 of ours x1
    assert "Where the time goes" in text and "decode" in text
    assert "pytrickle-invert-1 50.0" in text
    assert "note: a note" in text
    assert text.count("pass") + text.count("fail") + text.count("n/a") >= 9
    assert "harness CPU %" in text and "CPU ms/frame" in text
    assert "7.33" in text  # ours x1: CPU ms per frame
    assert "CPU per frame vs baseline, 4 streams" in text


def test_json_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "out" / "latency.json"
    report = _report()
    write_json(report, path)
    assert json.loads(path.read_text()) == json.loads(json.dumps(report))


def test_plot_is_a_png_with_one_panel_per_stream_count(tmp_path: Path) -> None:
    t = [i / 30 for i in range(300)]
    data = [
        {
            "system": system,
            "streams": n,
            "label": system,
            "series": [
                {
                    "t": t,
                    "glass_to_glass": [base + (i % 7) for i in range(300)],
                    "runner_added": [base / 3 for _ in range(300)],
                }
            ],
            "stage_series": [[(s, {"decode": 0.9, "infer": 2.5}) for s in range(10)]]
            if system == "ours"
            else [],
        }
        for n in (1, 2)
        for system, base in (("ours", 12.0), ("baseline", 50.0))
    ]
    panels = latency_panels(data)
    assert len(panels) == 2
    labels = [s.label for s in panels[0].series]
    assert labels == [
        "ours: glass-to-glass",
        "ours: runner-added",
        "stage decode p50",
        "stage infer p50",
        "baseline: glass-to-glass",
    ]
    path = tmp_path / "latency.png"
    draw(panels, path)
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size[1] == 2 * 380
        # Something was drawn in colour inside the plot area (not only axes and text).
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colours is not None and len(colours) > 20
