"""The smoke test's viewer: reads a stream's output channel, decodes each picture as soon as its
bytes are in, tells which input frame it is from the counter in its pixels, and optionally writes
the pictures to an MP4 file.

A workflow may change the pixels: an inverting workflow turns the counter into its complement, so
both readings are tried and the one nearer the frame the clock suggests wins. Pictures whose
counter cannot be read (a workflow that repaints the whole frame) still count as frames out; they
only carry no latency.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import av

from byoc.livepeer.trickle import SegmentReadError, SubscribeError, TrickleSubscriber
from byoc.smoke.pattern import COUNTER_MODULO, read_frame_counter
from byoc.smoke.segment_decoder import SegmentStreamDecoder
from egress.mp4 import Mp4Writer
from ingest.decoded import DecodedAudio, DecodedVideo

log = logging.getLogger(__name__)


AMBIGUOUS_FRAMES = 64  # readings this close to each other cannot tell plain from inverted


def frame_index(value: int, expected_index: float, *, inverted: bool = False) -> int:
    """The frame index whose counter (or its complement) reads ``value``, unwrapped to the
    modulo turn nearest ``expected_index`` (the frame the clock suggests)."""
    reading = COUNTER_MODULO - 1 - value if inverted else value
    turns = max(0, round((expected_index - reading) / COUNTER_MODULO))
    return reading + turns * COUNTER_MODULO


def guess_inverted(value: int, expected_index: float) -> bool | None:
    """Whether the picture shows the counter inverted, judged by which reading lies nearer the
    clock; ``None`` when both readings are too close to tell."""
    plain = frame_index(value, expected_index)
    inverted = frame_index(value, expected_index, inverted=True)
    if abs(plain - inverted) < AMBIGUOUS_FRAMES:
        return None
    return abs(inverted - expected_index) < abs(plain - expected_index)


@dataclass
class SinkLog:
    """What came back: per identified frame index, the monotonic ns it was decoded."""

    decoded: int = 0  # pictures out, identified or not
    frames: dict[int, int] = field(default_factory=dict)
    unreadable: int = 0
    duplicates: int = 0
    segments: int = 0
    bytes: int = 0
    first_picture_ns: int = 0
    last_picture_ns: int = 0
    size: tuple[int, int] | None = None
    error: str | None = None


class OutputReader:
    """Follows one output channel until it ends or :meth:`close` (see the module docstring)."""

    def __init__(
        self, subscribe_url: str, *, fps: int, out_path: str | None = None, label: str = ""
    ) -> None:
        self.fps = fps
        self.label = label
        self.t0_ns = 0  # when frame 0 was due; set before the source starts
        self.log = SinkLog()
        self.decoder = SegmentStreamDecoder(pixel_format=None, audio=False, label=label)
        self.subscriber = TrickleSubscriber(subscribe_url, start_seq=0, verify_tls=False)
        self.writer = (
            Mp4Writer(out_path, audio=False, frame_rate=fps, label=label) if out_path else None
        )
        self.inverted: bool | None = None  # the workflow inverts the pictures; None: unknown
        self.changed = asyncio.Event()  # set whenever a picture arrives
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name=f"smoke-sink-{self.label}")

    async def run(self) -> None:
        """Read segment after segment until the channel ends."""
        try:
            async for segment in self.subscriber:
                self.log.segments += 1
                self._take(self.decoder.new_segment())
                try:
                    async for chunk in segment.chunks():
                        self.log.bytes += len(chunk)
                        self._take(self.decoder.feed(chunk) + self.decoder.flush_pending())
                except SegmentReadError as exc:
                    log.info("smoke %s: output segment broke off: %s", self.label, exc)
            self._take(self.decoder.close())
        except SubscribeError as exc:
            self.log.error = f"reading output failed: {exc}"

    def _take(self, items: list[DecodedVideo | DecodedAudio]) -> None:
        for item in items:
            if isinstance(item, DecodedVideo):
                self._picture(item)

    def _picture(self, item: DecodedVideo) -> None:
        record = self.log
        record.decoded += 1
        record.size = (item.width, item.height)
        if not record.first_picture_ns:
            record.first_picture_ns = item.decoded_ns
        record.last_picture_ns = item.decoded_ns
        self.changed.set()
        if self.writer is not None:
            self._write(item.frame, item.pts)
        value = read_frame_counter(item.frame)
        if value is None:
            record.unreadable += 1
            return
        expected = (item.decoded_ns - self.t0_ns) * self.fps / 1e9 if self.t0_ns else 0.0
        if self.inverted is None:
            self.inverted = guess_inverted(value, expected)
            if self.inverted is None:
                record.unreadable += 1
                return
        index = frame_index(value, expected, inverted=self.inverted)
        if index in record.frames:
            record.duplicates += 1
            return
        record.frames[index] = item.decoded_ns

    def _write(self, frame: av.VideoFrame, pts: int) -> None:
        assert self.writer is not None
        try:
            self.writer.video(frame, pts)
        except (av.error.FFmpegError, ValueError) as exc:
            log.warning("smoke %s: writing the output video failed: %s", self.label, exc)
            self.writer.abort()
            self.writer = None

    async def wait_quiet(self, quiet_s: float, limit_s: float) -> None:
        """Wait for the output to settle: once pictures come, until none arrived for
        ``quiet_s`` seconds; before the first, up to ``limit_s`` seconds for it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        while loop.time() < deadline and not (self.task is not None and self.task.done()):
            self.changed.clear()
            left = deadline - loop.time()
            wait_s = min(quiet_s, left) if self.log.decoded else left
            try:
                await asyncio.wait_for(self.changed.wait(), max(0.0, wait_s))
            except asyncio.TimeoutError:
                if self.log.decoded:
                    return

    async def close(self) -> bool:
        """Stop reading and finish the video; True when an MP4 file was written."""
        await self.subscriber.close()
        if self.task is not None:
            done, _ = await asyncio.wait([self.task], timeout=5.0)
            if not done:
                self.task.cancel()
            (outcome,) = await asyncio.gather(self.task, return_exceptions=True)
            if isinstance(outcome, Exception) and self.log.error is None:
                self.log.error = f"reading output failed: {outcome!r}"
        if self.writer is None:
            return False
        return await asyncio.to_thread(self.writer.close)
