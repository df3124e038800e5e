"""The smoke test's camera: counter pictures encoded and published in real time.

Frame ``i`` is made at ``t0 + i / fps``, encoded at once (FFmpeg's libx264 zerolatency and MPEG-TS muxer, 1 s
segments each opening with a keyframe, as a third-party sender writes them) and its bytes handed
to the trickle publisher. ``captured_ns[i]`` is the moment frame ``i`` was made: glass-to-glass
latency is measured from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from byoc.livepeer.trickle import TricklePublisher
from byoc.livepeer.trickle.constants import CONTENT_TYPE_MPEGTS
from byoc.smoke.live_ts import LiveTsEncoder, TsChunk, TsSegmentWriter
from byoc.smoke.pattern import ClipSpec, video_yuv420p


@dataclass
class SourceLog:
    """What the source sent: the capture time of every frame (index = frame number)."""

    captured_ns: list[int] = field(default_factory=list)
    segments: int = 0
    bytes_sent: int = 0
    error: str | None = None

    @property
    def frames_sent(self) -> int:
        return len(self.captured_ns)


class ClipPublisher:
    """Publishes ``frames`` counter pictures on a trickle channel at the clip's frame rate."""

    def __init__(
        self,
        publish_url: str,
        spec: ClipSpec,
        frames: int,
        *,
        segment_seconds: float = 1.0,
        label: str = "",
    ) -> None:
        self.spec = spec
        self.frames = frames
        self.log = SourceLog()
        self.publisher = TricklePublisher(
            publish_url, CONTENT_TYPE_MPEGTS, verify_tls=False, delete_on_close=False
        )
        self.encoder = LiveTsEncoder(
            frame_rate=spec.fps, segment_seconds=segment_seconds, preset="ultrafast"
        )
        self._segments = TsSegmentWriter(self.publisher)

    async def run(self, t0_ns: int, stop: asyncio.Event) -> SourceLog:
        """Send every frame on schedule from ``t0_ns`` (monotonic) until done or ``stop``."""
        interval_ns = 1e9 / self.spec.fps
        try:
            for index in range(self.frames):
                delay = (t0_ns + index * interval_ns - time.monotonic_ns()) / 1e9
                if delay > 0:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    break
                picture = video_yuv420p(self.spec, index)
                self.log.captured_ns.append(time.monotonic_ns())
                await self._write(self.encoder.video(picture, self.spec.pts(index)))
            await self._write(self.encoder.close())
        except Exception as exc:  # reported, not raised: the output side may still tell a story
            self.log.error = f"publishing input failed: {exc}"
        return self.log

    async def _write(self, chunks: list[TsChunk]) -> None:
        await self._segments.write(chunks)
        self.log.segments = self._segments.segments
        self.log.bytes_sent = self._segments.bytes_sent

    async def close(self) -> None:
        """End the open segment and close the publisher (the channel stays)."""
        await self._segments.close()
        await self.publisher.close()
