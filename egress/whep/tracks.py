"""The tracks a WHEP viewer's peer connection sends: views of the stream's source."""

from __future__ import annotations

from fractions import Fraction

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from egress.audio import StreamAudioDecoder
from egress.whep.source import StreamPictures, ViewerAudio

OPUS_TIME_BASE = Fraction(1, 48_000)


class ViewerVideoTrack(MediaStreamTrack):
    """The stream's newest picture each time the viewer's encoder is ready for one."""

    kind = "video"

    def __init__(self, pictures: StreamPictures) -> None:
        super().__init__()
        self.pictures = pictures
        self.sent = 0
        self.skipped = 0
        self._seq = 0

    async def recv(self) -> av.VideoFrame:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        try:
            seq, picture = await self.pictures.next_after(self._seq)
        except EOFError:
            self.stop()
            raise MediaStreamError from None
        if self._seq:
            self.skipped += seq - self._seq - 1
        self._seq = seq
        self.sent += 1
        return picture


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
