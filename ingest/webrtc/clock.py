"""RTP timestamps of a WebRTC input onto the stream's 90 kHz timeline.

Each track's RTP clock starts at a random value and wraps at 2^32. ``RtpClock`` unwraps it and
anchors the track's first frame at its arrival time on a clock shared by the stream's tracks, so
audio and video that arrive together get pts that agree (within the network's jitter).
"""

from __future__ import annotations

import time
from collections.abc import Callable

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


class SenderClock:
    """A track's RTCP sender reports: its RTP timestamps on the sender's wall clock (NTP).

    aiortc hands out frames with the track's first RTP timestamp subtracted; ``rtp_origin``
    gives it back (None until the first packet), so frame timestamps and reports compare."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.reports = 0
        self.rtp_origin: Callable[[], int | None] = lambda: 0
        self._report: tuple[float, int] | None = None

    def on_report(self, ntp_timestamp: int, rtp_timestamp: int) -> None:
        """A sender report: 64-bit NTP time (32.32 fixed point) and the RTP time it matches."""
        self._report = (ntp_timestamp / (1 << 32), rtp_timestamp % WRAP)
        self.reports += 1

    def wallclock(self, frame_timestamp: int) -> float | None:
        """The sender's wall-clock time (seconds) of a frame's timestamp; None before a report."""
        origin = self.rtp_origin()
        if self._report is None or origin is None:
            return None
        ntp, rtp = self._report
        delta = (frame_timestamp + origin - rtp) % WRAP
        if delta >= WRAP // 2:
            delta -= WRAP
        return ntp + delta / self.rate


class AvTimeline:
    """Video and audio of one WebRTC input on one 90 kHz timeline.

    Video pts come from its RTP clock (``RtpClock``). Audio pts come from the sender reports of
    both tracks once there are some (the sender's wall clock is common to its tracks: audio lands
    where the video sampled at the same instant lands); before that, from the audio's own RTP
    clock anchored at its arrival, which is close (network jitter apart)."""

    def __init__(self) -> None:
        origin = SharedOrigin()
        self.video = RtpClock(TS_RATE, origin)
        self.audio = RtpClock(48_000, origin)
        self.video_reports = SenderClock(TS_RATE)
        self.audio_reports = SenderClock(48_000)
        self._video_ref: tuple[int, int] | None = None  # (RTP timestamp, pts) of a video frame

    def video_pts(self, rtp_timestamp: int, arrived_ns: int | None = None) -> int:
        pts = self.video.pts(rtp_timestamp, arrived_ns)
        self._video_ref = (rtp_timestamp, pts)
        return pts

    def audio_pts(self, rtp_timestamp: int, arrived_ns: int | None = None) -> int:
        own = self.audio.pts(rtp_timestamp, arrived_ns)
        if self._video_ref is None:
            return own
        audio_wall = self.audio_reports.wallclock(rtp_timestamp)
        video_wall = self.video_reports.wallclock(self._video_ref[0])
        if audio_wall is None or video_wall is None:
            return own
        return max(0, self._video_ref[1] + round((audio_wall - video_wall) * TS_RATE))
