"""The WebRTC benchmark's targets with pass/fail and its terminal tables."""

from __future__ import annotations

from typing import Any

from benchmarks.latency.figures import ratio
from benchmarks.latency.report import Target, _fmt, _table
from benchmarks.webrtc.bench import RELAY, RUNNER_EARLY

FIRST_FRAME_MS = 300.0
EGRESS_CPU_RATIO = 1.3


def _system(systems: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((s for s in systems if s["system"] == name and not s["error"]), None)


def _window(system: dict[str, Any] | None, viewers: int) -> dict[str, Any] | None:
    if system is None:
        return None
    return next((w for w in system["windows"] if w["viewers"] == viewers), None)


def _p50(window: dict[str, Any] | None) -> float | None:
    return window["latency_ms"].get("p50") if window else None


def _egress_cpu(window: dict[str, Any] | None) -> float | None:
    return window["cpu_percent"].get("egress") if window else None


def evaluate_targets(systems: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's three targets, measured on the runner with the complete-frame buffer."""
    relay, runner = _system(systems, RELAY), _system(systems, RUNNER_EARLY)
    relay_p50 = _p50(_window(relay, 1))
    runner_p50 = _p50(_window(runner, 1))
    p50 = (
        Target("runner glass-to-glass p50 <= bare relay p50, 1 viewer", relay_p50, "ms").check(
            runner_p50
        )
        if relay_p50 is not None
        else {
            "target": "runner glass-to-glass p50 <= bare relay p50, 1 viewer",
            "limit": "relay p50",
            "measured": runner_p50,
            "result": "n/a",
        }
    )
    first = Target("first output frame after the WHIP POST", FIRST_FRAME_MS, "ms").check(
        runner["first_frame_ms"] if runner else None
    )
    cpu = Target("egress CPU, 4 viewers / 1 viewer", EGRESS_CPU_RATIO, "x").check(
        ratio(_egress_cpu(_window(runner, 4)), _egress_cpu(_window(runner, 1)))
    )
    return [p50, first, cpu]


def format_report(report: dict[str, Any]) -> str:
    """Latency, drops and CPU per system and viewer count, then the targets."""
    systems: list[dict[str, Any]] = report["systems"]
    out: list[str] = []
    rows: list[list[str]] = []
    for system in systems:
        if system["error"]:
            rows.append([system["system"], "-", *["-"] * 7, f"error: {system['error']}"])
        for w in system["windows"]:
            lat = w["latency_ms"]
            rows.append(
                [
                    system["system"],
                    str(w["viewers"]),
                    _fmt(lat.get("p50")),
                    _fmt(lat.get("p95")),
                    _fmt(lat.get("p99")),
                    _fmt(system["first_frame_ms"]),
                    str(w["sent"]),
                    str(w["missing"]),
                    str(w["unreadable"]),
                    "",
                ]
            )
    spec = report["spec"]
    out.append(
        f"WebRTC glass-to-glass, {spec['width']}x{spec['height']} {spec['fps']} fps, "
        f"{report['window_s']:g} s windows (ms; missing: frames a viewer never showed, "
        "summed over viewers)"
    )
    out.append(
        _table(
            [
                "system",
                "viewers",
                "p50",
                "p95",
                "p99",
                "first frame",
                "sent",
                "missing",
                "unreadable",
                "",
            ],
            rows,
        )
    )
    names = sorted({n for s in systems for w in s["windows"] for n in w["cpu_percent"]})
    cpu_rows = [
        [s["system"], str(w["viewers"]), *(_fmt(w["cpu_percent"].get(n)) for n in names)]
        for s in systems
        for w in s["windows"]
    ]
    out.append("")
    out.append("CPU per process (% of one core)")
    out.append(_table(["system", "viewers", *names], cpu_rows))
    out.append("")
    out.append("Targets")
    out.append(
        _table(
            ["target", "limit", "measured", "result"],
            [
                [t["target"], str(t["limit"]), _fmt(t["measured"]), t["result"]]
                for t in report["targets"]
            ],
        )
    )
    out.append(
        f"load average before {report['load_average_before']}, after "
        f"{report['load_average_after']} on {report['cpu_cores']} cores"
    )
    return "\n".join(out)
