"""One codec's encoded pictures for the WHEP viewers that take that codec.

The shared encoder's packets are numbered and the last ``FEED_PACKETS`` kept. Each viewer's
track (``ViewerVideoTrack``) sends them in order from where it joined: a predicted picture
needs the ones before it, so a viewer never skips to the newest packet as it could with raw
pictures. A viewer starts at a keyframe (it asks for one when it joins), and one that fell so far
behind that its next packet is gone asks for a keyframe and resumes there (the packets it did not
send are counted as skipped).
"""

from __future__ import annotations

import asyncio
from collections import deque

import av

from egress.whep.encoders import SharedVideoEncoder

FEED_PACKETS = 15
"""Packets kept for viewers that are behind: half a second at 30 fps. A viewer further behind
than that waits for a keyframe instead of sending a burst of stale pictures."""


class PacketFeed:
    """The numbered packets of one shared encoder (see the module docstring)."""

    def __init__(self, encoder: SharedVideoEncoder, *, keep: int = FEED_PACKETS) -> None:
        self.encoder = encoder
        self.viewers = 0
        self.seq = 0
        """Number of the newest packet (0: none yet)."""
        self._packets: deque[tuple[int, av.Packet]] = deque(maxlen=keep)
        self._changed = asyncio.Event()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def push(self, packets: list[av.Packet]) -> None:
        """New packets for every viewer (shared: nobody changes them)."""
        if not packets:
            return
        for packet in packets:
            self.seq += 1
            self._packets.append((self.seq, packet))
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def next_after(self, seq: int) -> tuple[int, av.Packet]:
        """The oldest packet still kept that is numbered after ``seq`` (waits for one)."""
        while True:
            if self._closed:
                raise EOFError("the feed was closed")
            if self.seq > seq and self._packets:
                for number, packet in self._packets:
                    if number > seq:
                        return number, packet
            await self._changed.wait()

    def close(self) -> None:
        self._closed = True
        self._changed.set()
