"""The WebRTC benchmark's figures: window latencies and misses from stamps, the three targets."""

from __future__ import annotations

from typing import Any

from benchmarks.webrtc.bench import RELAY, RUNNER_EARLY, window_figures
from benchmarks.webrtc.report import evaluate_targets, format_report


class _Source:
    def __init__(self, sent_at: list[float]) -> None:
        self.sent_at = sent_at


class _Publisher:
    def __init__(self, sent_at: list[float]) -> None:
        self.source = _Source(sent_at)


class _Viewer:
    def __init__(self, arrivals: dict[int, float]) -> None:
        self.arrivals = arrivals


def test_window_figures_count_what_each_viewer_missed() -> None:
    sent = [10.0 + i / 30 for i in range(90)]  # 3 s of frames
    complete = _Viewer({i: t + 0.05 for i, t in enumerate(sent)})
    gappy = _Viewer({i: t + 0.1 for i, t in enumerate(sent) if i % 10})
    latencies, count, missing = window_figures(
        [complete, gappy],  # type: ignore[list-item]
        _Publisher(sent),  # type: ignore[arg-type]
        start=10.5,
        end=12.0,
    )
    assert count == 45  # sent in [10.5, 12.0): indices 15..59
    assert missing == sum(1 for i in range(15, 60) if i % 10 == 0)
    assert len(latencies) == 2 * 45 - missing
    assert abs(min(latencies) - 50.0) < 1e-6
    assert abs(max(latencies) - 100.0) < 1e-6


def _system(name: str, p50_1: float, egress_1: float, egress_4: float, first: float) -> dict:
    def window(viewers: int, p50: float, egress: float) -> dict[str, Any]:
        return {
            "viewers": viewers,
            "latency_ms": {"n": 100, "p50": p50, "p95": p50 + 10, "p99": p50 + 20},
            "sent": 100,
            "missing": 0,
            "unreadable": 0,
            "cpu_percent": {"egress": egress, "harness": 20.0},
        }

    return {
        "system": name,
        "first_frame_ms": first,
        "windows": [window(1, p50_1, egress_1), window(4, p50_1 + 5, egress_4)],
        "pids": {},
        "error": None,
    }


def test_targets_compare_the_runner_with_the_relay_measured_in_the_same_run() -> None:
    systems = [
        _system(RELAY, 80.0, 0.0, 0.0, 250.0),
        _system(RUNNER_EARLY, 60.0, 20.0, 30.0, 400.0),
    ]
    p50, first, cpu = evaluate_targets(systems)
    assert (p50["measured"], p50["result"]) == (60.0, "pass")
    assert (first["measured"], first["result"]) == (400.0, "fail")
    assert (cpu["measured"], cpu["result"]) == (1.5, "fail")


def test_a_failed_system_makes_its_targets_not_applicable_and_still_prints() -> None:
    broken = {**_system(RUNNER_EARLY, 0, 0, 0, 0), "error": "RuntimeError: boom", "windows": []}
    systems = [_system(RELAY, 80.0, 0.0, 0.0, 250.0), broken]
    assert [t["result"] for t in evaluate_targets(systems)] == ["n/a"] * 3
    report = {
        "spec": {"width": 512, "height": 512, "fps": 30},
        "window_s": 20.0,
        "systems": systems,
        "targets": evaluate_targets(systems),
        "load_average_before": [1.0, 1.0, 1.0],
        "load_average_after": [1.0, 1.0, 1.0],
        "cpu_cores": 2,
    }
    text = format_report(report)
    assert "error: RuntimeError: boom" in text and "relay" in text
