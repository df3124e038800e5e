"""CPU spent per picture on a session's WHEP video, 1 and 4 viewers, at 512x512.

Two ways, measured in the same run on the same pictures (the counter clip):

- ``aiortc``: what each viewer's ``RTCRtpSender`` did before the encoders were shared: its own
  aiortc ``H264Encoder`` (libx264 at x264's default ``medium`` preset, aiortc's 1 Mbit/s start)
  encodes and packetizes every picture;
- ``shared``: one ``SharedVideoEncoder`` (Constrained Baseline, ``superfast`` + zerolatency,
  1 Mbit/s) encodes the picture once, and each viewer's sender only packetizes the packet.

Reported per case: process CPU time per picture (ms) and the p50/p95/p99 of the wall time per
picture, and each case's 4-viewer/1-viewer CPU ratio. The network, SRTP and the event loop are
not included (the same for both): this isolates what sharing changes.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from fractions import Fraction

import av
from aiortc.codecs.h264 import H264Encoder

from benchmarks.media.clip import ClipSpec, video_frame
from egress.whep.encoders import SharedVideoEncoder
from egress.whep.h264 import level_for

SPEC = ClipSpec(width=512, height=512, fps=30)
TIME_BASE = Fraction(1, 90_000)
VIEWERS = (1, 4)


def _pictures(count: int) -> list[av.VideoFrame]:
    out = []
    for i in range(count):
        frame = video_frame(SPEC, i)
        frame.pts, frame.time_base = i * 3000, TIME_BASE
        out.append(frame)
    return out


def _aiortc(viewers: int) -> Callable[[av.VideoFrame], None]:
    encoders = [H264Encoder() for _ in range(viewers)]

    def send(picture: av.VideoFrame) -> None:
        for encoder in encoders:
            encoder.encode(picture, False)

    return send


def _shared(viewers: int) -> Callable[[av.VideoFrame], None]:
    shared = SharedVideoEncoder(
        "H264",
        preset="superfast",
        bit_rate=1_000_000,
        level_idc=level_for(SPEC.width, SPEC.height),
        keyframe_min_interval_s=0.5,
    )
    packers = [H264Encoder() for _ in range(viewers)]

    def send(picture: av.VideoFrame) -> None:
        for packet in shared.encode(picture):
            for packer in packers:
                packer.pack(packet)

    return send


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def run(*, quick: bool = False) -> dict[str, dict[str, float]]:
    """Each case's figures, keyed ``"<way> x<viewers>"``."""
    count = 90 if quick else 300
    results: dict[str, dict[str, float]] = {}
    for viewers in VIEWERS:
        for name, make in (("aiortc", _aiortc), ("shared", _shared)):
            pictures = _pictures(count)  # fresh: aiortc's encoder rewrites pts and time base
            send = make(viewers)
            send(pictures[0])  # opens the encoders
            walls = []
            cpu_start = time.process_time()
            for picture in pictures[1:]:
                start = time.perf_counter()
                send(picture)
                walls.append((time.perf_counter() - start) * 1000)
            cpu = (time.process_time() - cpu_start) * 1000 / len(walls)
            results[f"{name} x{viewers}"] = {
                "cpu_ms_per_picture": cpu,
                "p50_ms": statistics.median(walls),
                "p95_ms": _percentile(walls, 95),
                "p99_ms": _percentile(walls, 99),
            }
    for name in ("aiortc", "shared"):
        one = results[f"{name} x1"]["cpu_ms_per_picture"]
        results[f"{name} x4"]["cpu_vs_1_viewer"] = results[f"{name} x4"]["cpu_ms_per_picture"] / one
    return results


def format_report(results: dict[str, dict[str, float]]) -> str:
    lines = [
        f"WHEP video at {SPEC.width}x{SPEC.height}, CPU per picture (ms) and wall percentiles",
        f"{'case':<12} {'cpu':>7} {'p50':>7} {'p95':>7} {'p99':>7} {'x4/x1':>7}",
    ]
    for case, figures in results.items():
        ratio = figures.get("cpu_vs_1_viewer")
        lines.append(
            f"{case:<12} {figures['cpu_ms_per_picture']:7.2f} {figures['p50_ms']:7.2f} "
            f"{figures['p95_ms']:7.2f} {figures['p99_ms']:7.2f} "
            + (f"{ratio:7.2f}" if ratio is not None else f"{'':>7}")
        )
    shared4 = results["shared x4"]["cpu_ms_per_picture"]
    aiortc4 = results["aiortc x4"]["cpu_ms_per_picture"]
    lines.append(f"4 viewers: shared costs {shared4 / aiortc4:.2f}x aiortc's CPU")
    return "\n".join(lines)
