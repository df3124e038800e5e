"""What the ingest packet pacer costs and what it saves.

A real trickle server on loopback, a real ``TrickleSource`` writing into a real frame ring, and
camera input made by FFmpeg's encoders (640x360, 30 fps, H.264 High with two B-frames, AAC,
2 s segments, ``benchmarks.media.camera``), published two ways:

* **paced**: each access unit's bytes when a real-time muxer emits them (one every 1/30 s), as a
  camera streams through a gateway. Reported: the ingest latency of every picture (last byte of
  its packet parsed -> picture written to the ring, from the frame's own stamps), with the pacer
  on (the default buffer) and off, runs interleaved, and the difference of their percentiles.
* **whole segments**: each 2 s segment written in one go, one every 2 s. Reported: how many
  pictures a reader that keeps up at 30 fps sees when the ring has 4 slots (the live policy
  drops what it overwrites), with the pacer on and off.

``python -m benchmarks.trickle.pacing [--quick] [--json PATH]``
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import secrets
import sys
import time
from typing import Any

import numpy as np

from benchmarks.media.camera import CameraSpec, camera_segments
from byoc.livepeer.standin.trickle_server import TrickleServer
from byoc.livepeer.trickle import TricklePublisher
from ingest.pacing import DEFAULT_BUFFER_S
from ingest.ring_sink import RingSink
from ingest.stats import IngestStats
from ingest.stream import TrickleSource
from ipc.frame import Stage
from ipc.messages import Message
from ipc.ring import FrameRing, RingSpec

SPEC = CameraSpec(width=640, height=360, fps=30)
CONTENT_TYPE = "video/MP2T"


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    arr = np.asarray(values)
    return {
        "n": len(values),
        "p50": float(np.percentile(arr, 50)),
        "p90": float(np.percentile(arr, 90)),
        "p99": float(np.percentile(arr, 99)),
        "max": float(arr.max()),
    }


def _access_units(segment: bytes) -> list[bytes]:
    """A segment cut before every video PES start: what a real-time muxer writes per frame."""
    video_pid = None
    cuts = [0]
    for i in range(0, len(segment) - 187, 188):
        pid = ((segment[i + 1] & 0x1F) << 8) | segment[i + 2]
        if video_pid is None and pid not in (0, 0x11) and segment[i + 1] & 0x40:
            payload = i + 4 + (1 + segment[i + 4] if segment[i + 3] & 0x20 else 0)
            if segment[payload + 3] == 0xE0:  # a video PES stream id
                video_pid = pid
        if pid == video_pid and segment[i + 1] & 0x40 and i:
            cuts.append(i)
    cuts.append(len(segment))
    return [segment[a:b] for a, b in itertools.pairwise(cuts) if b > a]


async def _noop(message: Message) -> None:
    return None


async def _one_run(segments: list[bytes], *, buffer_s: float, paced: bool, slots: int) -> Any:
    """Publish ``segments`` into a fresh channel, ingest them; returns the frames read."""
    spec = RingSpec.for_stream(
        secrets.token_hex(4),
        "in",
        slots=slots,
        max_width=SPEC.width,
        max_height=SPEC.height,
        pixel_format="yuv420p",
    )
    ring = FrameRing.create(spec)
    latencies: list[float] = []
    seen = 0
    try:
        async with TrickleServer() as server:
            name = f"pace-{secrets.token_hex(3)}"
            server.create_channel(name, CONTENT_TYPE)
            url = server.channel_url(name)
            with ring.writer() as writer, ring.reader() as reader:
                source = TrickleSource(name, url, audio=False, pacing_buffer_s=buffer_s)
                sink = RingSink(name, writer, IngestStats(name), _noop, audio=False)
                task = asyncio.create_task(source.run(sink))
                done = asyncio.Event()

                async def read() -> None:
                    """A consumer that takes one frame per 1/30 s tick (the newest wins)."""
                    nonlocal seen
                    tick = time.monotonic()
                    while not done.is_set() or ring.stats().unread:
                        frame = reader.read()
                        if frame is not None:
                            seen += 1
                            stamps = frame.stamps
                            written = int(stamps[Stage.INGEST_WRITTEN])
                            first = int(stamps[Stage.INGEST_FIRST_BYTE])
                            if written and first:
                                latencies.append((written - first) / 1e6)
                        if paced and frame is not None:
                            continue  # latency run: read everything (32 slots)
                        tick = max(tick + 1 / SPEC.fps, time.monotonic() - 1 / SPEC.fps)
                        await asyncio.sleep(max(0.0, tick - time.monotonic()))

                consumer = asyncio.create_task(read())
                async with TricklePublisher(url, CONTENT_TYPE, delete_on_close=True) as pub:
                    start = time.monotonic()
                    sent = 0
                    for index, segment in enumerate(segments):
                        async with pub.segment() as out:
                            if paced:
                                for unit in _access_units(segment):
                                    due = start + sent / SPEC.fps
                                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                                    await out.write(unit)
                                    sent += 1
                            else:
                                due = start + index * SPEC.segment_seconds
                                await asyncio.sleep(max(0.0, due - time.monotonic()))
                                await out.write(segment)
                    await asyncio.sleep(DEFAULT_BUFFER_S + 0.5)  # let the pacer drain
                await asyncio.wait_for(task, 30)
                done.set()
                await asyncio.wait_for(consumer, 30)
    finally:
        ring.close()
        ring.unlink()
    return {"latency_ms": latencies, "frames": seen}


async def _run(quick: bool) -> dict[str, Any]:
    seconds = 6 if quick else 20
    frames = seconds * SPEC.fps
    segments = camera_segments(SPEC, frames)
    rounds = 1 if quick else 2
    on: list[float] = []
    off: list[float] = []
    for _ in range(rounds):
        on += (await _one_run(segments, buffer_s=DEFAULT_BUFFER_S, paced=True, slots=32))[
            "latency_ms"
        ]
        off += (await _one_run(segments, buffer_s=0.0, paced=True, slots=32))["latency_ms"]
    p_on, p_off = _percentiles(on), _percentiles(off)
    burst_on = await _one_run(segments, buffer_s=DEFAULT_BUFFER_S, paced=False, slots=4)
    burst_off = await _one_run(segments, buffer_s=0.0, paced=False, slots=4)
    return {
        "input": f"{SPEC.width}x{SPEC.height} {SPEC.fps} fps, {SPEC.b_frames} B-frames, "
        f"{SPEC.segment_seconds:g} s segments, {frames} frames",
        "paced_ingest_latency_ms": {
            "pacer_on": p_on,
            "pacer_off": p_off,
            "added_p50": p_on.get("p50", 0) - p_off.get("p50", 0),
            "added_p99": p_on.get("p99", 0) - p_off.get("p99", 0),
        },
        "whole_segments_frames_seen": {
            "sent": frames,
            "pacer_on": burst_on["frames"],
            "pacer_off": burst_off["frames"],
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    figures = asyncio.run(_run(args.quick))
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as handle:
            handle.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
