"""The WHEP encode benchmark runs and reports every case (its figures are not asserted)."""

from __future__ import annotations

from benchmarks.whep.bench import format_report, run


def test_quick_run_reports_both_ways_for_one_and_four_viewers() -> None:
    results = run(quick=True)
    assert set(results) == {"aiortc x1", "shared x1", "aiortc x4", "shared x4"}
    for figures in results.values():
        assert figures["cpu_ms_per_picture"] >= 0 and figures["p99_ms"] >= figures["p50_ms"]
    assert "cpu_vs_1_viewer" in results["shared x4"]
    assert "4 viewers: shared costs" in format_report(results)
