"""One stream's pictures and audio for its WHEP viewers: one source per stream, viewers attach.

The egress loop publishes each processed picture once (``publish``). Pictures get one pts on a
monotonic 90 kHz clock when published; each codec that viewers take has one shared encoder
(``egress.whep.encoders``) and one packet feed (``egress.whep.feed``): the picture is encoded
once per codec, whatever the number of viewers, off the event loop (one encode thread per
stream, so pictures stay in order). A codec's encoder is created with its first viewer and
dropped with its last; nothing is encoded while nobody watches.

Audio arrives encoded (``StreamAudio``, ahead of the video by the inference delay); each viewer
gets its own bounded queue of packets and releases one when the video has reached its pts, or
after ``AUDIO_MAX_WAIT_S`` (audio keeps flowing if the video stops).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

import av

from egress.whep.encoders import SharedEncoderStats, SharedVideoEncoder, VideoCodec
from egress.whep.feed import PacketFeed
from ipc.messages import StreamAudio

VIDEO_TIME_BASE = Fraction(1, 90_000)
AUDIO_QUEUE_PACKETS = 100  # about 2 s of 20 ms Opus packets per viewer
AUDIO_MAX_WAIT_S = 0.5

EncoderFactory = Callable[[VideoCodec], SharedVideoEncoder]


class StreamPictures:
    """A stream's pictures, encoded once per codec in use (see the module docstring)."""

    def __init__(self, new_encoder: EncoderFactory, *, label: str = "") -> None:
        self.seq = 0
        """Pictures encoded for viewers (published while at least one codec had viewers)."""
        self.size: tuple[int, int] | None = None
        """The newest picture's width and height."""
        self.source_pts: int | None = None
        """The newest picture's pts on the stream's timeline (90 kHz), for audio to wait on."""
        self.feeds: dict[VideoCodec, PacketFeed] = {}
        self._new_encoder = new_encoder
        self._retired = SharedEncoderStats()
        self._executor: ThreadPoolExecutor | None = None
        self._label = label
        self._origin_ns: int | None = None
        self._last_pts = -1
        self._closed = False

    def attach(self, codec: VideoCodec) -> PacketFeed:
        """The feed of ``codec`` for one more viewer (its encoder starts with the first)."""
        if self._closed:
            raise EOFError("the stream ended")
        feed = self.feeds.get(codec)
        if feed is None:
            feed = self.feeds[codec] = PacketFeed(self._new_encoder(codec))
        feed.viewers += 1
        return feed

    def detach(self, feed: PacketFeed) -> None:
        """One viewer of ``feed`` left; the last one stops its encoder."""
        feed.viewers -= 1
        if feed.viewers <= 0 and self.feeds.get(feed.encoder.codec) is feed:
            del self.feeds[feed.encoder.codec]
            self._retire(feed)

    async def publish(self, picture: av.VideoFrame, source_pts: int) -> None:
        """Encode a new picture for every codec in use (the caller no longer touches it)."""
        now = time.monotonic_ns()
        if self._origin_ns is None:
            self._origin_ns = now
        pts = max(self._last_pts + 1, (now - self._origin_ns) * 90_000 // 1_000_000_000)
        self._last_pts = pts
        picture.pts = pts
        picture.time_base = VIDEO_TIME_BASE
        self.size = (picture.width, picture.height)
        self.source_pts = source_pts
        feeds = list(self.feeds.values())
        if not feeds or self._closed:
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"whep-{self._label}")
        loop = asyncio.get_running_loop()
        encoded = await loop.run_in_executor(self._executor, _encode_all, feeds, picture)
        self.seq += 1  # counted once encoded, so it never runs ahead of the encoders' counts
        for feed, packets in zip(feeds, encoded, strict=True):
            if not feed.closed:
                feed.push(packets)

    def encoder_stats(self) -> dict[str, int]:
        """Totals of every shared encoder this stream had: ``encoders`` running now,
        ``encoders_opened`` (codec contexts opened), ``pictures`` published while someone
        watched, ``frames_encoded`` (over all codecs), ``keyframes``, ``keyframe_requests``,
        ``keyframes_forced``."""
        totals = SharedEncoderStats(**vars(self._retired))
        for feed in self.feeds.values():
            for name, value in vars(feed.encoder.stats).items():
                setattr(totals, name, getattr(totals, name) + value)
        return {
            "encoders": len(self.feeds),
            "encoders_opened": totals.opened,
            "pictures": self.seq,
            "frames_encoded": totals.frames,
            "keyframes": totals.keyframes,
            "keyframe_requests": totals.keyframe_requests,
            "keyframes_forced": totals.keyframes_forced,
        }

    def close(self) -> None:
        self._closed = True
        for feed in list(self.feeds.values()):
            self._retire(feed)
        self.feeds.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _retire(self, feed: PacketFeed) -> None:
        feed.close()
        for name, value in vars(feed.encoder.stats).items():
            setattr(self._retired, name, getattr(self._retired, name) + value)


def _encode_all(feeds: list[PacketFeed], picture: av.VideoFrame) -> list[list[av.Packet]]:
    return [feed.encoder.encode(picture) for feed in feeds]


class ViewerAudio:
    """One viewer's audio packets waiting for the video to reach them (bounded)."""

    def __init__(self, pictures: StreamPictures) -> None:
        self.pictures = pictures
        self.dropped = 0
        self._queue: deque[tuple[StreamAudio, int]] = deque()
        self._arrived = asyncio.Event()

    def push(self, message: StreamAudio) -> None:
        if len(self._queue) >= AUDIO_QUEUE_PACKETS:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append((message, time.monotonic_ns()))
        self._arrived.set()

    async def next(self) -> StreamAudio:
        """The next packet once it is due."""
        while True:
            if self._queue:
                message, arrived = self._queue[0]
                video = self.pictures.source_pts
                waited = (time.monotonic_ns() - arrived) / 1e9
                if (video is not None and message.pts <= video) or waited >= AUDIO_MAX_WAIT_S:
                    self._queue.popleft()
                    return message
                delay = AUDIO_MAX_WAIT_S - waited
            else:
                delay = AUDIO_MAX_WAIT_S
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), min(delay, 0.02))
            except asyncio.TimeoutError:
                pass
