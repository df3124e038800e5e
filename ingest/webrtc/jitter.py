"""A video jitter buffer that releases a frame as soon as it is complete.

aiortc's receive jitter buffer hands a video frame to the decoder only when the first packet of
the *next* frame arrives (it finds the end of a frame by a change of RTP timestamp), which holds
every frame back by one frame interval (~33 ms at 30 fps). The sender marks a frame's last
packet with the RTP marker bit (RFC 6184 for H.264, RFC 7741 for VP8), so a frame is complete
once its packets are contiguous in sequence number from its first packet up to the marked one.

``CompleteFrameJitterBuffer`` keeps aiortc's buffer as it is (its reordering, its overflow and
reset rules, the PLI it asks for) and adds only that check after each packet. NACKs are not the
buffer's business: aiortc's receiver sends them for every gap before a packet reaches the buffer.
"""

from __future__ import annotations

import logging

from aiortc import RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_gt

log = logging.getLogger(__name__)

VIDEO_CAPACITY = 512  # packets, as aiortc's receiver sizes its video buffer
_RECEIVER_BUFFER = "_RTCRtpReceiver__jitter_buffer"


class CompleteFrameJitterBuffer(JitterBuffer):
    """aiortc's video jitter buffer, releasing each frame once its marked last packet and every
    packet before it have arrived."""

    def __init__(self, capacity: int = VIDEO_CAPACITY) -> None:
        super().__init__(capacity=capacity, is_video=True)
        self._released_timestamp: int | None = None
        self._newest: int | None = None  # highest sequence number seen
        self.early_frames = 0
        """Frames released on their marker bit (before the next frame began)."""

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        """Store ``packet``; return ``(pli wanted, a frame ready for the decoder or None)``."""
        pli, frame = super().add(packet)
        # Only a marker or a late packet (reordered, retransmitted) can complete the head frame:
        # other packets need no scan.
        late = self._newest is not None and uint16_gt(self._newest, packet.sequence_number)
        if not late:
            self._newest = packet.sequence_number
        if frame is None:
            self._skip_padding()
            if packet.marker or late:
                frame = self._take_complete_frame()
                if frame is not None:
                    self.early_frames += 1
        if frame is not None:
            self._released_timestamp = frame.timestamp
        return pli, frame

    def _take_complete_frame(self) -> JitterFrame | None:
        """The frame at the head of the buffer if it is complete, removed from the buffer."""
        origin = self._origin
        if origin is None:
            return None
        first = self._packets[origin % self._capacity]
        if first is None:
            return None
        for count in range(self._capacity):
            packet = self._packets[(origin + count) % self._capacity]
            if packet is None or packet.timestamp != first.timestamp:
                return None  # a gap (NACKed, or lost) or the frame's end never came
            if packet.marker:
                packets = [self._packets[(origin + i) % self._capacity] for i in range(count + 1)]
                self.remove(count + 1)
                return JitterFrame(
                    data=b"".join(p._data for p in packets if p is not None),  # type: ignore[attr-defined]
                    timestamp=first.timestamp,
                )
        return None

    def _skip_padding(self) -> None:
        """Drop empty packets of a frame already released (senders pad to probe bandwidth with
        the last frame's timestamp): left at the head they would hold the next frame back."""
        while self._origin is not None:
            packet = self._packets[self._origin % self._capacity]
            if (
                packet is None
                or packet.timestamp != self._released_timestamp
                or len(getattr(packet, "_data", b"")) > 0
            ):
                return
            self.remove(1)


def release_complete_frames(receiver: RTCRtpReceiver, stream_id: str = "") -> bool:
    """Give a video ``receiver`` a ``CompleteFrameJitterBuffer`` (before its first packet);
    False when this aiortc keeps its buffer elsewhere (the receiver then works as before)."""
    current = getattr(receiver, _RECEIVER_BUFFER, None)
    if not isinstance(current, JitterBuffer):
        log.warning("stream %s: aiortc's jitter buffer not found, frames released late", stream_id)
        return False
    setattr(receiver, _RECEIVER_BUFFER, CompleteFrameJitterBuffer(capacity=current.capacity))
    return True
