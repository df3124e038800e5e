"""The benchmark's viewer: subscribes a stream's output channel, decodes each frame as soon as
its bytes are in, and reads the clip's frame counter back from the output pixels.

Stamps per output frame (monotonic ns): ``arrived`` (the bytes that completed the frame came
off the connection) and ``decoded`` (the decoder returned the picture). ``decoded - arrived`` is
the sink's decode time. Frames are identified by the counter drawn in their pixels, not by
timestamps, so a runner that renumbers or retimes frames is still measured right. The invert
workflow inverts the counter blocks too: ``inverted=True`` reads the complement.

Reading follows the low-latency rule of the runner's own ingest: every chunk is fed as it
arrives, and frames without a declared PES length are released when the connection has nothing
more buffered (``SegmentStreamDecoder.flush_pending``), instead of waiting for the next frame.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import av

from benchmarks.latency.figures import unwrap_counter
from benchmarks.media.clip import COUNTER_MODULO, read_frame_counter
from benchmarks.media.segment_decoder import SegmentStreamDecoder
from byoc.livepeer.trickle import SegmentReadError, SubscribeError, TrickleSubscriber
from ingest.decoded import DecodedAudio, DecodedVideo

log = logging.getLogger(__name__)

RECENT_FRAMES = 30


def output_counter(frame: av.VideoFrame, *, inverted: bool) -> int | None:
    """The counter (modulo 4096) drawn in an output picture; ``None`` when unreadable.

    An inverted picture swaps the bit row and its check row, so the plain reading is the
    bitwise complement of the counter.
    """
    value = read_frame_counter(frame)
    if value is None:
        return None
    return (COUNTER_MODULO - 1 - value) if inverted else value


@dataclass
class SinkRecord:
    """What one stream's viewer received: per frame index ``(arrived_ns, decoded_ns)``."""

    stream_id: str
    frames: dict[int, tuple[int, int]] = field(default_factory=dict)
    decoded: int = 0
    unreadable: int = 0  # pictures whose counter could not be read
    duplicates: int = 0  # a counter seen twice (the runner repeated a frame)
    out_of_order: int = 0  # a counter lower than one already seen
    segments: int = 0
    bytes: int = 0
    first_arrival_ns: int = 0
    last_arrival_ns: int = 0
    decoder: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "stream_id": self.stream_id,
            "frames_seen": len(self.frames),
            "decoded": self.decoded,
            "unreadable": self.unreadable,
            "duplicates": self.duplicates,
            "out_of_order": self.out_of_order,
            "segments": self.segments,
            "bytes": self.bytes,
            "decoder": self.decoder,
            "error": self.error,
        }


class OutputSink:
    """Reads one output channel until it ends or ``close()`` (see the module docstring)."""

    def __init__(
        self,
        stream_id: str,
        subscribe_url: str,
        *,
        fps: int,
        inverted: bool,
        start_seq: int = 0,
        counter_period: int = COUNTER_MODULO,
    ) -> None:
        self.stream_id = stream_id
        self.fps = fps
        self.inverted = inverted
        self.counter_period = counter_period  # a looping source's length in frames
        self.t0_ns = 0  # when the source's frame 0 is due; set before the source starts
        self.record = SinkRecord(stream_id)
        self.decoder = SegmentStreamDecoder(pixel_format=None, audio=False, label=stream_id)
        self.subscriber = TrickleSubscriber(subscribe_url, start_seq=start_seq, verify_tls=False)
        self._highest = -1
        self._recent: deque[float] = deque(maxlen=RECENT_FRAMES)
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name=f"sink-{self.stream_id}")

    def recent_latency_ms(self) -> float | None:
        """Median delay of the last frames behind their schedule (frame i is due at
        ``t0 + i / fps``): a live glance for the progress line, not a reported figure."""
        if not self._recent:
            return None
        return float(statistics.median(self._recent))

    @property
    def highest_index(self) -> int:
        """The highest frame index seen so far (-1 before the first)."""
        return self._highest

    async def run(self) -> None:
        """Follow the channel segment by segment until it ends."""
        record = self.record
        try:
            async for segment in self.subscriber:
                record.segments += 1
                self._take(self.decoder.new_segment(), time.monotonic_ns())
                try:
                    async for chunk in segment.chunks():
                        arrived = time.monotonic_ns()
                        record.bytes += len(chunk)
                        # iter_any hands over everything buffered: nothing more is here now.
                        self._take(self.decoder.feed(chunk) + self.decoder.flush_pending(), arrived)
                except SegmentReadError as exc:
                    log.info("sink %s: %s", self.stream_id, exc)
            self._take(self.decoder.close(), time.monotonic_ns())
        except SubscribeError as exc:
            record.error = str(exc)
        finally:
            record.decoder = self.decoder.stats()

    def ingest_frames(self, items: list[DecodedVideo | DecodedAudio], arrived_ns: int) -> None:
        """Account decoded pictures (public for tests that feed bytes without a channel)."""
        self._take(items, arrived_ns)

    def _take(self, items: list[DecodedVideo | DecodedAudio], arrived_ns: int) -> None:
        record = self.record
        for item in items:
            if not isinstance(item, DecodedVideo):
                continue
            record.decoded += 1
            value = output_counter(item.frame, inverted=self.inverted)
            if value is None:
                record.unreadable += 1
                continue
            expected = (item.decoded_ns - self.t0_ns) * self.fps / 1e9 if self.t0_ns else 0.0
            index = unwrap_counter(value, expected, self.counter_period)
            if index in record.frames:
                record.duplicates += 1
                continue
            if index < self._highest:
                record.out_of_order += 1
            self._highest = max(self._highest, index)
            record.frames[index] = (arrived_ns, item.decoded_ns)
            if self.t0_ns:
                due = self.t0_ns + index * 1e9 / self.fps
                self._recent.append((item.decoded_ns - due) / 1e6)
            if not record.first_arrival_ns:
                record.first_arrival_ns = arrived_ns
            record.last_arrival_ns = arrived_ns

    async def close(self) -> None:
        """Stop reading (the channel may still be open) and wait for the reader to finish."""
        await self.subscriber.close()
        if self.task is not None:
            done, _ = await asyncio.wait([self.task], timeout=5.0)
            if not done:
                self.task.cancel()
            (outcome,) = await asyncio.gather(self.task, return_exceptions=True)
            if isinstance(outcome, Exception):
                self.record.error = self.record.error or repr(outcome)
