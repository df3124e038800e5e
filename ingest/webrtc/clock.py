"""RTP timestamps of a WebRTC input onto the stream's 90 kHz timeline.

Each track's RTP clock starts at a random value and wraps at 2^32. ``RtpClock`` unwraps it and
anchors the track's first frame at its arrival time on a clock shared by the stream's tracks, so
audio and video that arrive together get pts that agree (within the network's jitter).
"""

from __future__ import annotations

import time

WRAP = 1 << 32
TS_RATE = 90_000


class SharedOrigin:
    """The stream's time zero: the arrival of its first frame, whatever the track."""

    def __init__(self) -> None:
        self.origin_ns: int | None = None

    def ticks_since_origin(self, now_ns: int) -> int:
        if self.origin_ns is None:
            self.origin_ns = now_ns
        return (now_ns - self.origin_ns) * TS_RATE // 1_000_000_000


class RtpClock:
    """One track's RTP timestamps (``rate`` Hz) to 90 kHz pts on the shared timeline."""

    def __init__(self, rate: int, origin: SharedOrigin) -> None:
        self.rate = rate
        self.origin = origin
        self._last: int | None = None
        self._extended = 0
        self._anchor_pts = 0
        self.wraps = 0

    def pts(self, rtp_timestamp: int, arrived_ns: int | None = None) -> int:
        """The 90 kHz pts of a frame with this RTP timestamp."""
        ts = rtp_timestamp % WRAP
        if self._last is None:
            self._last = ts
            now = time.monotonic_ns() if arrived_ns is None else arrived_ns
            self._anchor_pts = self.origin.ticks_since_origin(now)
            return self._anchor_pts
        delta = (ts - self._last) % WRAP
        if delta >= WRAP // 2:
            delta -= WRAP  # a reordered (older) frame, not a jump forward by half the range
        elif ts < self._last:
            self.wraps += 1
        self._last = ts
        self._extended += delta
        return self._anchor_pts + self._extended * TS_RATE // self.rate
