"""One stream's pictures and audio for its WHEP viewers: one source per stream, viewers attach.

The egress loop publishes each processed picture once (``publish``); every viewer's track waits
for a sequence number newer than the last it sent, so a slow viewer skips to the newest picture
instead of queueing (the skipped ones are counted per viewer). Pictures get one pts on a
monotonic 90 kHz clock when published, shared by every viewer (a viewer never mutates a shared
frame). A later issue can swap the pictures for pre-encoded packets here without touching the
peer connections.

Audio arrives encoded (``StreamAudio``, ahead of the video by the inference delay); each viewer
gets its own bounded queue of packets and releases one when the video has reached its pts, or
after ``AUDIO_MAX_WAIT_S`` (audio keeps flowing if the video stops).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from fractions import Fraction

import av

from ipc.messages import StreamAudio

VIDEO_TIME_BASE = Fraction(1, 90_000)
AUDIO_QUEUE_PACKETS = 100  # about 2 s of 20 ms Opus packets per viewer
AUDIO_MAX_WAIT_S = 0.5


class StreamPictures:
    """The newest picture of a stream, numbered (see the module docstring)."""

    def __init__(self) -> None:
        self.seq = 0
        self.picture: av.VideoFrame | None = None
        self.source_pts: int | None = None
        """The newest picture's pts on the stream's timeline (90 kHz), for audio to wait on."""
        self.viewers = 0
        self._changed = asyncio.Event()
        self._origin_ns: int | None = None
        self._last_pts = -1
        self._closed = False

    def publish(self, picture: av.VideoFrame, source_pts: int) -> None:
        """A new picture for every viewer (the caller no longer touches it)."""
        now = time.monotonic_ns()
        if self._origin_ns is None:
            self._origin_ns = now
        pts = max(self._last_pts + 1, (now - self._origin_ns) * 90_000 // 1_000_000_000)
        self._last_pts = pts
        picture.pts = pts
        picture.time_base = VIDEO_TIME_BASE
        self.picture, self.source_pts = picture, source_pts
        self.seq += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def next_after(self, seq: int) -> tuple[int, av.VideoFrame]:
        """The newest picture numbered after ``seq`` (waits for one)."""
        while self.seq <= seq or self.picture is None:
            if self._closed:
                raise EOFError("stream ended")
            await self._changed.wait()
        return self.seq, self.picture

    def close(self) -> None:
        self._closed = True
        self._changed.set()


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
