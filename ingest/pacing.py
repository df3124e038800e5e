"""A bounded buffer of compressed input packets, released at the input's own cadence.

Trickle input can arrive in bursts: a gateway that writes whole segments, or network jitter,
delivers two seconds of packets at once. Decoding them at once would put 60 pictures into a
ring of a few slots, and the live policy would keep only the newest. ``PacketPacer`` holds the
packets instead (compressed: a few hundred kB for a 2 s HD segment) and releases each when the
stream clock reaches its timestamp.

The stream clock is anchored on arrival: ``due(ts) = anchor + ts / 90 kHz``. What decides
between paced input and a burst is the newest packet held: when nothing held is more than
``jitter_s`` ahead of the clock (or the packet arrived alone), the input is paced, the packet is
released at once and the newest arrival sets the clock. Otherwise (a burst: packets that
arrived seconds ahead of their time) each packet waits for its due time. A late packet moves the
anchor to its own arrival; a discontinuity re-anchors too. Paced input therefore passes straight
through, whatever the network's jitter. A clock moved later by a late packet (a decode or network
hiccup) would otherwise hold every later packet by that much for good, since on-time packets then
look early and never arrive to an empty buffer: while video packets keep arriving at their own
cadence (over the last ``PACED_WINDOW_S`` each arrived at the same offset from its timestamp,
within the jitter: not a burst), the clock drifts back towards their arrivals, at most
``CATCH_UP_RATE`` faster than real time. When the buffered packets span more than ``max_buffer_s`` (input
truly faster than real time), the head is released at once (a catch-up, counted) and newest-frame
wins further down the pipeline, as before. ``max_buffer_s = 0`` turns pacing off.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ingest.tsdemux import TS_CLOCK, EsPacket

Marker = Callable[[], None]
"""Something to do in order with the packets (mark a discontinuity, ask for a keyframe)."""

DEFAULT_BUFFER_S = 2.5
"""A little more than one 2 s segment, the usual gateway segment."""
JITTER_S = 0.05
"""A packet this close to its due time is not held: network jitter, not a burst."""
PACED_WINDOW_S = 0.5
"""Stream time over which arrivals are compared with their timestamps to tell paced input."""
CATCH_UP_RATE = 0.1
"""How much faster than real time a clock left behind by a hiccup drifts back (10 %)."""


@dataclass
class PacingStats:
    """What the pacer did (totals)."""

    released: int = 0
    waited: int = 0  # packets released after a wait (they arrived early: a burst)
    wait_s: float = 0.0  # sum of the waits
    catch_ups: int = 0  # packets released early because the buffer was over its bound
    clock_drift_s: float = 0.0  # how far the clock drifted back towards paced arrivals
    max_buffered_s: float = 0.0


class PacketPacer:
    """FIFO of packets and markers; ``get`` returns each packet at its due time."""

    def __init__(
        self,
        max_buffer_s: float = DEFAULT_BUFFER_S,
        *,
        jitter_s: float = JITTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_buffer_s < 0:
            raise ValueError("max_buffer_s must be >= 0")
        self.max_buffer_s = max_buffer_s
        self.jitter_s = jitter_s
        self.stats = PacingStats()
        self._clock = clock
        # Each item with whether it arrived to an empty buffer (nothing held ahead of it).
        self._items: deque[tuple[EsPacket | Marker, bool]] = deque()
        self._newest_ts: int | None = None
        self._anchor: float | None = None
        self._arrivals: deque[tuple[float, int]] = deque()  # (arrival - ts, ts) of video
        self._changed = asyncio.Event()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: EsPacket | Marker) -> None:
        """Queue a packet (timestamps already on the ingest timeline) or a marker."""
        if self._closed:
            raise RuntimeError("the pacer is closed")
        self._items.append((item, not self._items))
        if isinstance(item, EsPacket):
            ts = _timestamp(item)
            if ts is not None and (self._newest_ts is None or ts > self._newest_ts):
                # The furthest timestamp, not the last: audio may be muxed behind the video.
                self._newest_ts = ts
            if ts is not None and item.stream.kind == "video":
                self._follow_arrival(ts)
        self._changed.set()

    def _follow_arrival(self, ts: int) -> None:
        """Drift the clock back towards a video packet that arrived early by it while the input
        arrives paced (see the module docstring)."""
        now = self._clock()
        offsets = self._arrivals
        previous_ts = offsets[-1][1] if offsets else None
        offsets.append((now - ts / TS_CLOCK, ts))
        while len(offsets) > 2 and abs(ts - offsets[0][1]) > PACED_WINDOW_S * TS_CLOCK:
            offsets.popleft()
        if self._anchor is None or self.max_buffer_s == 0 or previous_ts is None:
            return
        early = self._anchor + ts / TS_CLOCK - now
        if early <= self.jitter_s or abs(ts - offsets[0][1]) < PACED_WINDOW_S / 2 * TS_CLOCK:
            return
        # Paced: every packet of the window arrived at the same offset from its timestamp,
        # give or take the jitter (a burst's offsets fall by the burst's length).
        spread = max(o for o, _ in offsets) - min(o for o, _ in offsets)
        if spread > self.jitter_s:
            return
        step = CATCH_UP_RATE * max(0, ts - previous_ts) / TS_CLOCK
        drift = min(early - self.jitter_s, step)
        self._anchor -= drift
        self.stats.clock_drift_s += drift

    def close(self) -> None:
        """No more items: ``get`` returns what is left, then ``None``."""
        self._closed = True
        self._changed.set()

    def buffered_s(self) -> float:
        """Stream time between the next packet to release and the newest one."""
        head = self._head_ts()
        if head is None or self._newest_ts is None:
            return 0.0
        return max(0.0, (self._newest_ts - head) / TS_CLOCK)

    async def get(self) -> EsPacket | Marker | None:
        """The next item, once due; ``None`` when closed and empty."""
        while True:
            if not self._items:
                if self._closed:
                    return None
                self._changed.clear()
                await self._changed.wait()
                continue
            item, arrived_alone = self._items[0]
            if not isinstance(item, EsPacket):
                self._items.popleft()
                return item
            wait = self._wait_for(item, arrived_alone)
            if wait <= 0:
                self._items.popleft()
                self.stats.released += 1
                return item
            self._changed.clear()
            try:
                # Woken early by a new packet: the bound may now be exceeded.
                await asyncio.wait_for(self._changed.wait(), wait)
            except asyncio.TimeoutError:
                self._items.popleft()
                self.stats.released += 1
                self.stats.waited += 1
                self.stats.wait_s += wait
                return item

    def _wait_for(self, packet: EsPacket, arrived_alone: bool) -> float:
        """Seconds until ``packet`` (the head) is due, moving the clock's anchor where it must."""
        ts = _timestamp(packet)
        now = self._clock()
        if ts is None or self.max_buffer_s == 0:
            return 0.0
        buffered = self.buffered_s()
        self.stats.max_buffered_s = max(self.stats.max_buffered_s, buffered)
        if self._anchor is None or packet.discontinuity:
            self._anchor = now - ts / TS_CLOCK
            if packet.discontinuity:
                self._arrivals.clear()
            return 0.0
        early = self._anchor + ts / TS_CLOCK - now
        if early <= 0 or early > self.max_buffer_s:
            # Late, or a timestamp we cannot trust: the clock follows this packet.
            self._anchor = now - ts / TS_CLOCK
            return 0.0
        if buffered > self.max_buffer_s:
            self._anchor = now - ts / TS_CLOCK
            self.stats.catch_ups += 1
            return 0.0
        newest = self._newest_ts if self._newest_ts is not None else ts
        newest_early = self._anchor + newest / TS_CLOCK - now
        if (arrived_alone and len(self._items) == 1) or newest_early <= self.jitter_s:
            # Nothing we hold is ahead of the stream's cadence by more than jitter: this is
            # paced input, not a burst. Release, and let the newest arrival set the clock.
            self._anchor = now - newest / TS_CLOCK
            return 0.0
        return early

    def _head_ts(self) -> int | None:
        for item, _ in self._items:
            if isinstance(item, EsPacket):
                ts = _timestamp(item)
                if ts is not None:
                    return ts
        return None


def _timestamp(packet: EsPacket) -> int | None:
    return packet.dts if packet.dts is not None else packet.pts
