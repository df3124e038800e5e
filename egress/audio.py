"""The input's audio on the egress side: ``StreamAudio`` packets from the parent, decoded when
they need transcoding, and held briefly so they can be interleaved with the video by pts.

Audio skips inference, so it usually arrives ahead of the video it belongs to by the inference
delay. :class:`AudioInterleaver` keeps encoded packets until the video has caught up with their
pts, but never longer than ``max_wait_s`` (audio keeps flowing if the video stops) and never
more than ``max_packets`` (the oldest is dropped and counted).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from fractions import Fraction
from typing import cast

import av
from av.audio.codeccontext import AudioCodecContext

from ipc.messages import StreamAudio

log = logging.getLogger(__name__)

TS_TIME_BASE = Fraction(1, 90_000)
AUDIO_CODECS = ("aac", "opus")


class StreamAudioDecoder:
    """Decodes ``StreamAudio`` packets (AAC ADTS or Opus) to ``av.AudioFrame``s with pts in
    90 kHz. A change of codec, rate or channel count starts a new decoder."""

    def __init__(self, *, label: str = "") -> None:
        self.label = label
        self.errors = 0
        self._ctx: AudioCodecContext | None = None
        self._key: tuple[str, int, int] | None = None

    def decode(self, message: StreamAudio) -> list[av.AudioFrame]:
        key = (message.codec, message.sample_rate, message.channels)
        if self._ctx is None or key != self._key:
            self._ctx = self._open(*key)
            self._key = key
        packet = av.Packet(message.data)
        packet.pts = message.pts
        packet.time_base = TS_TIME_BASE
        try:
            frames = self._ctx.decode(packet)
        except av.FFmpegError as exc:
            self.errors += 1
            log.warning("stream %s: audio decode error: %s", self.label, exc)
            return []
        for frame in frames:
            if frame.pts is None:
                frame.pts = message.pts
            frame.time_base = TS_TIME_BASE
        return frames

    @staticmethod
    def _open(codec: str, sample_rate: int, channels: int) -> AudioCodecContext:
        if codec not in AUDIO_CODECS:
            raise ValueError(f"unsupported audio codec {codec!r}")
        ctx = cast(AudioCodecContext, av.CodecContext.create(codec, "r"))
        if codec == "opus":
            ctx.sample_rate = 48_000
            ctx.layout = "mono" if channels == 1 else "stereo"
        return ctx


class AudioInterleaver:
    """Encoded audio packets ``(pts in 90 kHz, bytes)`` waiting for the video to catch up."""

    def __init__(self, *, max_packets: int = 150, max_wait_s: float = 0.5) -> None:
        self.max_packets = max_packets
        self.max_wait_ns = int(max_wait_s * 1e9)
        self.dropped = 0
        self._queue: deque[tuple[int, bytes, int]] = deque()

    def __len__(self) -> int:
        return len(self._queue)

    def push(self, pts: int, data: bytes, now_ns: int | None = None) -> None:
        if len(self._queue) >= self.max_packets:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append((pts, data, time.monotonic_ns() if now_ns is None else now_ns))

    def due(self, until_pts: int | None, now_ns: int | None = None) -> list[tuple[int, bytes]]:
        """Packets to mux now: those with pts before ``until_pts`` (None: none by pts) and those
        that waited ``max_wait_s``; in arrival order (which is pts order per source)."""
        queue = self._queue
        if not queue:
            return []
        now = time.monotonic_ns() if now_ns is None else now_ns
        out: list[tuple[int, bytes]] = []
        while queue:
            pts, data, arrived = queue[0]
            if (until_pts is not None and pts < until_pts) or now - arrived >= self.max_wait_ns:
                queue.popleft()
                out.append((pts, data))
            else:
                break
        return out

    def drain(self) -> list[tuple[int, bytes]]:
        """Everything still held (end of stream)."""
        out = [(pts, data) for pts, data, _ in self._queue]
        self._queue.clear()
        return out

    def discard_before(self, pts: int) -> int:
        """Drop packets older than ``pts`` (audio from before the first picture); returns how
        many."""
        dropped = 0
        while self._queue and self._queue[0][0] < pts:
            self._queue.popleft()
            dropped += 1
        return dropped
