"""The benchmark's video source: the test clip published in real time, as a gateway publishes a
camera to the orchestrator's input channel.

Frame ``i`` of a stream is due at ``t0 + offset + i / fps`` (the moment it is "captured"). With a
pre-encoded ``LoopingClip`` (what the benchmark uses) its bytes are the clip's, encoded once before
the run by libx264 zerolatency and FFmpeg's MPEG-TS muxer (1 s segments, each opening with a
keyframe), with timestamps moved on per loop: the source costs no encode per frame, so the
machine's cores go to the systems under test. Without one, each frame is drawn and encoded when
due. Either way its bytes are handed to the trickle publisher. Two stamps per frame, monotonic
ns: ``capture`` (the frame exists) and ``sent`` (its last byte was queued on the segment's open
POST, whose body task writes it to the socket on the next event-loop turn). ``sent - capture`` is
the source's encode time (pre-encoded: only the timestamp patch and the queueing). ``tail_s`` more seconds of frames follow the measured ones, uncounted, so that
frames a runner holds until the next one arrives (a demuxer waiting for the next PES) are
not counted as lost at the end.

Runs in its own process (``python -m benchmarks.latency.source``) so that encoding does not
delay the sink's reading in the benchmark's main process. Protocol on stdin/stdout, one JSON
document per line: config in -> ``{"ready": true}`` out -> ``{"t0_ns": ...}`` in -> records out
(``{"records": [...], "cpu_s": ...}``, with its CPU seconds since the go) when every stream has
sent ``duration_s`` of frames, or earlier after ``{"stop": true}`` in, SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.media.clip import ClipSpec, video_yuv420p
from benchmarks.media.live_ts import LiveTsEncoder, TsChunk
from benchmarks.media.looping_clip import LoopingClip
from byoc.livepeer.trickle import (
    ChannelClosedError,
    SegmentWriter,
    TrickleError,
    TricklePublisher,
)
from byoc.livepeer.trickle.constants import CONTENT_TYPE_MPEGTS


@dataclass
class SourceRecord:
    """What one stream's source sent: per frame ``capture_ns`` and ``sent_ns`` (index = frame)."""

    stream_id: str
    t0_ns: int
    fps: int
    measured_frames: int = 0  # frames that count; the ones after them only flush the path
    capture_ns: list[int] = field(default_factory=list)
    sent_ns: list[int] = field(default_factory=list)
    bytes_sent: int = 0
    segments: int = 0
    max_lateness_ms: float = 0.0  # how far behind its schedule the source ever was
    error: str | None = None

    @property
    def frames_sent(self) -> int:
        """Frames sent within the measured duration (tail frames excluded)."""
        return min(len(self.sent_ns), self.measured_frames)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SourceRecord:
        return cls(**data)


class ClipSource:
    """Publishes the clip on one trickle channel in real time (see the module docstring)."""

    def __init__(
        self,
        stream_id: str,
        publish_url: str,
        *,
        spec: ClipSpec,
        duration_s: float,
        tail_s: float = 0.0,
        offset_s: float = 0.0,
        preset: str = "ultrafast",
        segment_seconds: float = 1.0,
        clip: LoopingClip | None = None,
    ) -> None:
        self.stream_id = stream_id
        self.clip = clip
        self.spec = spec
        self.measured = max(1, round(duration_s * spec.fps))
        self.frames = self.measured + max(0, round(tail_s * spec.fps))
        self.offset_ns = int(offset_s * 1e9)
        self.publisher = TricklePublisher(
            publish_url,
            CONTENT_TYPE_MPEGTS,
            verify_tls=False,
            delete_on_close=False,  # the orchestrator owns the channel
        )
        self.encoder = LiveTsEncoder(
            frame_rate=spec.fps, segment_seconds=segment_seconds, preset=preset
        )
        self._writer: SegmentWriter | None = None
        self._fresh_writer = False

    async def prepare(self) -> None:
        """Open the first segment's POST now, so the first frame does not wait for a connect."""
        self._writer = await self.publisher.next_segment()
        self._fresh_writer = True

    async def run(self, t0_ns: int, stop: asyncio.Event) -> SourceRecord:
        """Send every frame on schedule from ``t0_ns`` (monotonic) until done or ``stop``."""
        spec = self.spec
        record = SourceRecord(self.stream_id, t0_ns + self.offset_ns, spec.fps, self.measured)
        interval_ns = 1e9 / spec.fps
        try:
            for index in range(self.frames):
                due = record.t0_ns + int(index * interval_ns)
                delay = (due - time.monotonic_ns()) / 1e9
                if delay > 0:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    break
                if self.clip is not None:
                    captured = time.monotonic_ns()
                    chunks = self.clip.chunks_for(index)
                else:
                    picture = video_yuv420p(spec, index)
                    captured = time.monotonic_ns()
                    chunks = self.encoder.video(picture, spec.pts(index))
                await self._write(chunks, record)
                record.capture_ns.append(captured)
                record.sent_ns.append(time.monotonic_ns())
                record.max_lateness_ms = max(record.max_lateness_ms, (captured - due) / 1e6)
            if self.clip is None:
                await self._write(self.encoder.close(), record)
            elif record.sent_ns:
                await self._write(self.clip.closing_after(len(record.sent_ns) - 1), record)
        except (ChannelClosedError, TrickleError) as exc:
            record.error = f"publish failed: {exc}"
        return record

    async def _write(self, chunks: list[TsChunk], record: SourceRecord) -> None:
        for chunk in chunks:
            if chunk.first:
                if self._writer is not None and not self._fresh_writer:
                    await self._writer.close()
                    self._writer = None
                if self._writer is None:
                    self._writer = await self.publisher.next_segment()
                self._fresh_writer = False
                record.segments += 1
            if chunk.data and self._writer is not None:
                await self._writer.write(chunk.data)
                record.bytes_sent += len(chunk.data)
            if chunk.last and self._writer is not None:
                await self._writer.close()
                self._writer = None

    async def close(self) -> None:
        """End the open segment (if any) and close the publisher, keeping the channel."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                if self._fresh_writer:
                    await self._writer.abort()
                else:
                    await self._writer.close()
            self._writer = None
        await self.publisher.close()


# ------------------------------------------------------------------------------ process entry


def _emit(document: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()


async def _read_json_line(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    line = await reader.readline()
    if not line:
        return None
    data = json.loads(line)
    return data if isinstance(data, dict) else None


async def _serve() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    config = await _read_json_line(reader)
    if config is None:
        return
    spec = ClipSpec(width=config["width"], height=config["height"], fps=config["fps"])
    clip = LoopingClip.load(Path(config["clip_path"])) if config.get("clip_path") else None
    if clip is not None and clip.spec != spec:
        raise SystemExit(f"the pre-encoded clip is {clip.spec}, not {spec}")
    sources = [
        ClipSource(
            item["stream_id"],
            item["publish_url"],
            spec=spec,
            duration_s=config["duration_s"],
            tail_s=config.get("tail_s", 0.0),
            offset_s=item.get("offset_s", 0.0),
            preset=config.get("preset", "ultrafast"),
            clip=clip,
        )
        for item in config["streams"]
    ]
    try:
        await asyncio.gather(*(source.prepare() for source in sources))
        _emit({"ready": True})
        go = await _read_json_line(reader)
        if go is None or "t0_ns" not in go:
            return
        cpu0 = time.process_time()

        async def watch_stdin() -> None:
            while not stop.is_set():
                message = await _read_json_line(reader)
                if message is None or message.get("stop"):
                    stop.set()

        watcher = asyncio.create_task(watch_stdin())
        records = await asyncio.gather(*(s.run(int(go["t0_ns"]), stop) for s in sources))
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        # Its own CPU over the run: the process exits right after, before the benchmark could
        # read it from /proc.
        _emit({"records": [r.to_json() for r in records], "cpu_s": time.process_time() - cpu0})
    finally:
        await asyncio.gather(*(s.close() for s in sources), return_exceptions=True)


def main() -> None:
    """Process entry: read the config line from stdin and serve (see the module docstring)."""
    asyncio.run(_serve())


if __name__ == "__main__":
    main()
