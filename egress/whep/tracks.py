"""The tracks a WHEP viewer's peer connection sends: the stream's shared video packets and its
audio."""

from __future__ import annotations

from fractions import Fraction

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from egress.audio import StreamAudioDecoder
from egress.whep.feed import PacketFeed
from egress.whep.source import ViewerAudio

OPUS_TIME_BASE = Fraction(1, 48_000)


class ViewerVideoTrack(MediaStreamTrack):
    """The shared encoder's packets for one viewer, from a keyframe on (``egress.whep.feed``).

    aiortc's sender packetizes an ``av.Packet`` as it is; its keyframe requests (PLI/FIR) come
    here through ``request_keyframe`` and go to the shared encoder, which throttles them."""

    kind = "video"

    def __init__(self, feed: PacketFeed) -> None:
        super().__init__()
        self.feed = feed
        self.sent = 0
        self.skipped = 0
        self.keyframe_requests = 0
        self._seq = feed.seq
        self._resyncing = False
        self._waiting_for_keyframe = True
        self.request_keyframe()  # a viewer that joins mid-stream starts at an IDR

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1
        self.feed.encoder.request_keyframe()

    async def recv(self) -> av.Packet:  # type: ignore[override]
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            try:
                seq, packet = await self.feed.next_after(self._seq)
            except EOFError:
                self.stop()
                raise MediaStreamError from None
            if seq != self._seq + 1 and not self._waiting_for_keyframe:
                # Fell behind further than the feed keeps: resume at a keyframe.
                self.skipped += seq - self._seq - 1
                self._waiting_for_keyframe = self._resyncing = True
                self.request_keyframe()
            self._seq = seq
            if self._waiting_for_keyframe and not packet.is_keyframe:
                self.skipped += self._resyncing
                continue
            self._waiting_for_keyframe = self._resyncing = False
            self.sent += 1
            return packet


class ViewerAudioTrack(MediaStreamTrack):
    """The stream's input audio, decoded for this viewer and timed by its own sample count."""

    kind = "audio"

    def __init__(self, audio: ViewerAudio, *, label: str = "") -> None:
        super().__init__()
        self.audio = audio
        self._decoder = StreamAudioDecoder(label=label)
        # aiortc's Opus encoder takes s16 only.
        self._resampler = av.AudioResampler(format="s16", layout="stereo", rate=48_000)
        self._pending: list[av.AudioFrame] = []
        self._samples = 0

    async def recv(self) -> av.AudioFrame:  # type: ignore[override]
        while not self._pending:
            if self.readyState != "live":
                raise MediaStreamError
            for decoded in self._decoder.decode(await self.audio.next()):
                decoded.pts = None
                self._pending += self._resampler.resample(decoded)
        frame = self._pending.pop(0)
        frame.pts = self._samples
        frame.time_base = OPUS_TIME_BASE
        self._samples += frame.samples
        return frame
