"""Ingest decode latency and egress encode cost for trickle video, 512x512 at 30 fps.

Decode latency is the time from the last byte of a frame leaving its sender to the decoded
picture, per frame. A writer process sends a clip frame by frame at 30 fps; the reader is either

* ``ours``: the runner's own ingest path, ``ingest.stream.IngestStream`` with its
  ``TrickleSource`` (trickle subscriber, demuxer, pacer, decoder) writing into a shared-memory
  ring, as the ingest worker runs it. The writer process hosts a trickle channel (the local
  stand-in's server) and publishes each frame's bytes the moment they exist; a frame's decode
  time is its ``DECODED`` stamp, read back from the ring. Measured with the default pacing
  buffer (``ours``) and with pacing off (``ours_pacing_off``), so what the pacer holds shows;
* ``ffmpeg``: FFmpeg's own MPEG-TS demuxer and decoder (PyAV ``av.open``) on a loopback TCP
  socket, which is how ai-runner and pytrickle read trickle input once the bytes are in.

Both read the same bytes at the same pace, one after the other in the same process, from two
inputs: segments written by FFmpeg's muxer with the video PES length left at zero (what
go-livepeer's RTMP ingest produces), and the same with the PES length set (what our egress and
other muxers write); neither comes from our own muxer. Both decoders run single-threaded, so the
difference is the demuxing.

Encode cost is measured on the same clip: libx264 ``ultrafast`` and ``superfast`` with
``zerolatency``, one thread and sliced threads (per-frame encode time and output bitrate at
CRF 23), and the muxer hand-off (the time from an encoded packet to its TS bytes being handed
to the caller).

``python -m benchmarks.trickle.decode_latency [--quick] [--json PATH]``; ``run(quick)`` returns
the figures as a dict.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import secrets
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av
import numpy as np

from benchmarks.media.clip import ClipSpec, TsSegment, ffmpeg_ts_segments, video_yuv420p
from byoc.livepeer.standin.trickle_server import TrickleServer
from byoc.livepeer.trickle import TricklePublisher
from byoc.livepeer.trickle.constants import CONTENT_TYPE_MPEGTS
from egress.encode import VideoEncoder
from egress.mux import SegmentMuxer
from ingest.decode import VideoDecoder
from ingest.pacing import DEFAULT_BUFFER_S as DEFAULT_PACING_BUFFER_S
from ingest.stream import IngestStream
from ingest.tsdemux import TsDemuxer
from ipc.frame import Stage
from ipc.messages import IngestConfig, Message, StreamStats
from ipc.ring import FrameRing, RingSpec

SPEC = ClipSpec(width=512, height=512, fps=30)
FRAME_TICKS = 90_000 // SPEC.fps
WARMUP_SECONDS = 2.0  # frames in the first seconds (FFmpeg's probing) are left out


@dataclass
class Input:
    """A clip as per-frame byte chunks, with the byte offsets where trickle segments begin."""

    name: str
    frames: list[bytes]  # bytes to send once frame i exists (frame i complete in them)
    segment_starts: list[int]  # frame indices that open a segment


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    arr = np.asarray(values)
    return {
        "n": len(values),
        "p50": round(float(np.percentile(arr, 50)), 3),
        "p90": round(float(np.percentile(arr, 90)), 3),
        "p99": round(float(np.percentile(arr, 99)), 3),
        "max": round(float(arr.max()), 3),
    }


# ------------------------------------------------------------------------------------ inputs


def ffmpeg_input(segments: list[TsSegment], name: str) -> Input:
    frames: list[bytes] = []
    starts: list[int] = []
    for segment in segments:
        starts.append(len(frames))
        chunks = list(segment.frame_chunks)
        chunks[-1] += segment.tail
        frames += chunks
    return Input(name, frames, starts)


# ------------------------------------------------------------------------------------ pacing


def _send_paced(address: tuple[str, int], frames: list[bytes], sent_ns: Any) -> None:
    """Writer process: send frame after frame at the clip's rate; stamp each last byte."""
    with socket.create_connection(address) as sender:
        sender.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start = time.monotonic() + 0.05
        for index, data in enumerate(frames):
            delay = start + index / SPEC.fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sender.sendall(data)
            sent_ns[index] = time.monotonic_ns()
        sender.shutdown(socket.SHUT_WR)


def _measure(
    clip: Input, read: Callable[[socket.socket, Input, dict[int, int]], dict[str, Any]]
) -> dict[str, Any]:
    # The writer is another process (CLOCK_MONOTONIC is system-wide), so that it competes
    # with the reader for the CPU as a network peer would, not for the GIL.
    context = multiprocessing.get_context("fork")
    sent_ns = context.Array("q", len(clip.frames), lock=False)
    decoded_ns: dict[int, int] = {}
    with socket.create_server(("127.0.0.1", 0)) as server:
        writer = context.Process(
            target=_send_paced, args=(server.getsockname(), clip.frames, sent_ns), daemon=True
        )
        writer.start()
        try:
            server.settimeout(30)
            receiver, _ = server.accept()
            try:
                extra = read(receiver, clip, decoded_ns)
            finally:
                receiver.close()
            writer.join(timeout=30)
        finally:
            if writer.is_alive():
                writer.terminate()
                writer.join()
    return _figures(clip, sent_ns, decoded_ns, extra)


def _figures(
    clip: Input, sent_ns: Any, decoded_ns: dict[int, int], extra: dict[str, Any]
) -> dict[str, Any]:
    warmup = int(WARMUP_SECONDS * SPEC.fps)
    latencies = [
        (decoded_ns[i] - sent_ns[i]) / 1e6
        for i in sorted(decoded_ns)
        if i >= warmup and 0 <= i < len(clip.frames) and sent_ns[i]
    ]
    first = min(decoded_ns.values()) if decoded_ns else 0
    result: dict[str, Any] = {
        "frames_sent": len(clip.frames),
        "frames_decoded": len(decoded_ns),
        "latency_ms": _percentiles(latencies),
        "first_frame_ms": round((first - sent_ns[0]) / 1e6, 1) if decoded_ns else None,
    }
    result.update(extra)
    return result


def _frame_index(pts: int | None) -> int:
    return -1 if pts is None else (pts - SPEC.start_pts) // FRAME_TICKS


def _host_and_publish(
    frames: list[bytes], segment_starts: list[int], address: Any, sent_ns: Any
) -> None:
    """Writer process for ``ours``: a trickle channel on loopback (its URL goes back through
    ``address``), published frame by frame at the clip's rate; stamps each frame's last byte."""

    async def publish() -> None:
        async with TrickleServer() as server:
            name = f"bench-{secrets.token_hex(4)}"
            server.create_channel(name, CONTENT_TYPE_MPEGTS)
            address.send(server.channel_url(name))
            address.recv()  # the reader is subscribed
            publisher = TricklePublisher(server.channel_url(name), CONTENT_TYPE_MPEGTS)
            writer = None
            start = time.monotonic() + 0.05
            for index, data in enumerate(frames):
                delay = start + index / SPEC.fps - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if index in segment_starts:
                    if writer is not None:
                        await writer.close()
                    writer = await publisher.next_segment()
                assert writer is not None
                await writer.write(data)
                sent_ns[index] = time.monotonic_ns()
            if writer is not None:
                await writer.close()
            await publisher.close()  # deletes the channel: the reader's input ends
            address.recv()  # the reader is done

    asyncio.run(publish())


def measure_ours(
    clip: Input, *, pacing_buffer_s: float = DEFAULT_PACING_BUFFER_S
) -> dict[str, Any]:
    """The product's ingest path on a real trickle channel, timed from the ring's stamps
    (``pacing_buffer_s`` as ``--pacing-buffer-s``: 0 turns the pacer off)."""
    context = multiprocessing.get_context("fork")
    sent_ns = context.Array("q", len(clip.frames), lock=False)
    ours, theirs = context.Pipe()
    writer = context.Process(
        target=_host_and_publish,
        args=(clip.frames, clip.segment_starts, theirs, sent_ns),
        daemon=True,
    )
    writer.start()
    try:
        decoded_ns, extra = asyncio.run(_ingest(ours, len(clip.frames), pacing_buffer_s))
        writer.join(timeout=30)
    finally:
        if writer.is_alive():
            writer.terminate()
            writer.join()
    return _figures(clip, sent_ns, decoded_ns, extra)


async def _ingest(
    address: Any, count: int, pacing_buffer_s: float
) -> tuple[dict[int, int], dict[str, Any]]:
    url = address.recv()
    spec = RingSpec.for_stream(
        secrets.token_hex(4),
        "in",
        slots=8,
        max_width=SPEC.width,
        max_height=SPEC.height,
        pixel_format="yuv420p",
    )
    ring = FrameRing.create(spec)
    reports: list[StreamStats] = []

    async def send(message: Message) -> None:
        if isinstance(message, StreamStats):
            reports.append(message)

    decoded_ns: dict[int, int] = {}
    config = IngestConfig(ring=spec, subscribe_url=url, pacing_buffer_s=pacing_buffer_s)
    stream = IngestStream("bench", config, send)
    try:
        with ring.reader() as reader:
            stream.start()
            address.send("subscribed")
            while len(decoded_ns) < count:
                frame = await reader.read_async(copy=False, timeout=10)
                if frame is None:
                    break
                decoded_ns[_frame_index(frame.pts)] = int(frame.stamps[Stage.DECODED])
                frame.release()
        await stream.stop()
    finally:
        ring.close()
        ring.unlink()
        address.send("done")
    dropped = reports[-1].dropped if reports else {}
    return decoded_ns, {"dropped": {k: v for k, v in dropped.items() if v}}


def read_ffmpeg(receiver: socket.socket, clip: Input, decoded_ns: dict[int, int]) -> dict[str, Any]:
    """FFmpeg's demuxer on the socket, defaults as ai-runner/pytrickle use it."""
    stream_file = receiver.makefile("rb", buffering=0)
    with av.open(stream_file, "r", format="mpegts") as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        for frame in container.decode(stream):
            decoded_ns[_frame_index(frame.pts)] = time.monotonic_ns()
    stream_file.close()
    return {}


def measure_decode_cpu(clip: Input) -> dict[str, Any]:
    """Per-frame cost of our path with the bytes already in memory: demux alone, and demux +
    decode (ingest's demuxer and decoder), each frame fed whole then flushed."""
    demuxer = TsDemuxer()
    demux_ms: list[float] = []
    for data in clip.frames:
        t0 = time.perf_counter_ns()
        demuxer.feed(data)
        demuxer.flush_pending()
        demux_ms.append((time.perf_counter_ns() - t0) / 1e6)
    demuxer = TsDemuxer()
    decoder = VideoDecoder(pixel_format=None)  # as ingest decodes: the ring copy is separate
    total_ms: list[float] = []
    for data in clip.frames:
        t0 = time.perf_counter_ns()
        for packet in demuxer.feed(data) + demuxer.flush_pending():
            if packet.stream.kind == "video":
                decoder.decode(packet)
        total_ms.append((time.perf_counter_ns() - t0) / 1e6)
    return {"demux_ms": _percentiles(demux_ms), "demux_decode_ms": _percentiles(total_ms)}


# ------------------------------------------------------------------------------------ encode


def measure_encode(frames: int) -> dict[str, Any]:
    pictures = [video_yuv420p(SPEC, i) for i in range(min(frames, 150))]
    out: dict[str, Any] = {}
    for preset, threads in (("ultrafast", 1), ("superfast", 1), ("superfast", 0)):
        encoder = VideoEncoder(SPEC.width, SPEC.height, preset=preset, threads=threads)
        muxer = SegmentMuxer(segment_seconds=1.0)
        encode_ms: list[float] = []
        mux_ms: list[float] = []
        sizes: list[int] = []
        for i in range(frames):
            pts = SPEC.pts(i)
            force = muxer.segment_due(pts)
            t0 = time.perf_counter_ns()
            packets = encoder.encode(pictures[i % len(pictures)], pts, force_keyframe=force)
            t1 = time.perf_counter_ns()
            for packet in packets:
                t2 = time.perf_counter_ns()
                muxer.write_video(bytes(packet), packet.pts or 0, packet.dts, packet.is_keyframe)
                mux_ms.append((time.perf_counter_ns() - t2) / 1e6)
                sizes.append(packet.size)
            encode_ms.append((t1 - t0) / 1e6)
        out[f"{preset}, threads={threads or 'auto'}"] = {
            "encode_ms": _percentiles(encode_ms),
            "mux_handoff_ms": _percentiles(mux_ms),
            "kbit_per_s": round(sum(sizes) * 8 * SPEC.fps / len(sizes) / 1000, 1),
        }
    rgb = np.ascontiguousarray(np.zeros((SPEC.height, SPEC.width, 3), np.uint8))
    convert_ms = []
    for _ in range(60):
        t0 = time.perf_counter_ns()
        av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        convert_ms.append((time.perf_counter_ns() - t0) / 1e6)
    out["rgb24_to_yuv420p_ms"] = _percentiles(convert_ms)
    return out


# ------------------------------------------------------------------------------------ run


def run(quick: bool = False) -> dict[str, Any]:
    """Run the benchmark; returns its figures (latencies in milliseconds)."""
    seconds = (
        4 if quick else 30
    )  # the quick form keeps python -m benchmarks.trickle --quick under 30 s
    frame_count = seconds * SPEC.fps
    inputs = [
        ffmpeg_input(
            ffmpeg_ts_segments(SPEC, frame_count, segment_frames=SPEC.fps),
            "ffmpeg-muxed, video PES length 0",
        ),
        ffmpeg_input(
            ffmpeg_ts_segments(SPEC, frame_count, segment_frames=SPEC.fps, video_pes_length=True),
            "ffmpeg-muxed, video PES length set",
        ),
    ]
    results: dict[str, Any] = {
        "benchmark": "trickle.decode_latency",
        "quick": quick,
        "clip": f"{SPEC.width}x{SPEC.height}@{SPEC.fps}, {seconds} s, 1 s segments, loopback TCP",
        "warmup_seconds_excluded": WARMUP_SECONDS,
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "pyav": av.__version__,
            "ffmpeg_libavcodec": ".".join(map(str, av.library_versions["libavcodec"])),
        },
        "decode": {},
    }
    for clip in inputs:
        kbit = sum(len(f) for f in clip.frames) * 8 / seconds / 1000
        entry: dict[str, Any] = {"stream_kbit_per_s": round(kbit, 1)}
        entry["ours"] = measure_ours(clip)
        entry["ours_pacing_off"] = measure_ours(clip, pacing_buffer_s=0)
        entry["ours_cpu_per_frame"] = measure_decode_cpu(clip)
        entry["ffmpeg"] = _measure(clip, read_ffmpeg)
        ours = entry["ours"]["latency_ms"].get("p50")
        theirs = entry["ffmpeg"]["latency_ms"].get("p50")
        if ours and theirs:
            entry["ffmpeg_p50_minus_ours_ms"] = round(theirs - ours, 3)
        results["decode"][clip.name] = entry
    results["encode"] = measure_encode(60 if quick else 300)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short run (under 30 s)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    results = run(quick=args.quick)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
