"""The encoders WHEP viewers share: one per codec in use per stream, whatever the viewer count.

aiortc sends what a track returns as it is when that is an ``av.Packet`` (its sender only
packetizes it), so the viewers' tracks return the packets these encoders make once per picture.

- H.264: libx264, Constrained Baseline (what every WHEP viewer decodes) at a fixed level chosen by
  the caller (``egress.whep.h264``), the stream's x264 preset with ``tune=zerolatency``, SPS/PPS
  in front of every IDR (``repeat-headers``, Annex B), an IDR every ``GOP_S`` and on request.
- VP8: libvpx in real-time mode, as aiortc configures it but without its noise reduction (it
  smears small detail such as text).

Both run at the configured bitrate (VBV-capped for x264, CBR for libvpx): one stream serves
viewers on different links, so it does not follow any one viewer's estimate.

Keyframe requests (a viewer joining, a PLI/FIR) are throttled by ``KeyframeThrottle``: a request
inside the window is kept and honoured when the window ends, so a viewer that asks always gets
an IDR soon, and one that keeps asking cannot make the stream all-intra.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import av
from av.video.frame import PictureType

from egress.colour import colour_of, swscale_target
from egress.encode import VideoEncoder
from egress.whep.h264 import x264_level
from ipc.colour import Colour

log = logging.getLogger(__name__)

VideoCodec = Literal["H264", "VP8"]
VIDEO_TIME_BASE = Fraction(1, 90_000)
GOP_S = 4.0
"""Longest time between two IDRs with nobody asking: how long a viewer that lost a packet
without asking (no PLI support) waits for a clean picture."""
ASSUMED_FPS = 30


@dataclass
class SharedEncoderStats:
    """Counters of one shared encoder (totals since it was created)."""

    opened: int = 0
    """Codec contexts opened: one, plus one per picture size change."""
    frames: int = 0
    """Pictures encoded (once each, for every viewer)."""
    keyframes: int = 0
    keyframe_requests: int = 0
    keyframes_forced: int = 0


class KeyframeThrottle:
    """At most one forced keyframe per ``min_interval_s``; a request inside the window waits
    for its end instead of being lost. Any keyframe (asked for or not) satisfies every request
    made before it and starts a new window."""

    def __init__(self, min_interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.min_interval_s = min_interval_s
        self._clock = clock
        self._wanted = False
        self._last: float | None = None

    def request(self) -> None:
        self._wanted = True

    def due(self) -> bool:
        """Whether the next picture must be a keyframe (called once per picture)."""
        if not self._wanted:
            return False
        return self._last is None or self._clock() - self._last >= self.min_interval_s

    def keyframe_sent(self) -> None:
        self._wanted = False
        self._last = self._clock()


class SharedVideoEncoder:
    """One codec's encoder for every viewer of a stream. ``encode`` blocks (run it off the event
    loop); ``request_keyframe`` may be called from the loop meanwhile."""

    def __init__(
        self,
        codec: VideoCodec,
        *,
        preset: str,
        bit_rate: int,
        level_idc: int,
        keyframe_min_interval_s: float,
        label: str = "",
    ) -> None:
        self.codec = codec
        self.preset = preset
        self.bit_rate = bit_rate
        self.level_idc = level_idc
        self.label = label
        self.stats = SharedEncoderStats()
        self.throttle = KeyframeThrottle(keyframe_min_interval_s)
        self._size: tuple[int, int] | None = None
        self._colour = Colour()
        self._h264: VideoEncoder | None = None
        self._vp8: av.VideoCodecContext | None = None

    def request_keyframe(self) -> None:
        """The next picture (or the first after the throttle window) is a keyframe."""
        self.stats.keyframe_requests += 1
        self.throttle.request()

    def encode(self, picture: av.VideoFrame) -> list[av.Packet]:
        """Encode ``picture`` (``pts`` on the 90 kHz clock); its packets carry ``pts`` and
        ``time_base`` as aiortc's packetizers want them."""
        if picture.width % 2 or picture.height % 2:  # 4:2:0 needs even sizes
            pts = picture.pts
            picture = picture.reformat(picture.width & ~1, picture.height & ~1)
            picture.pts = pts
        size = (picture.width, picture.height)
        if size != self._size:
            self._open(picture)
        forced = self.throttle.due()
        if self._h264 is not None:
            assert picture.pts is not None
            packets = self._h264.encode(
                picture, picture.pts, VIDEO_TIME_BASE, force_keyframe=forced
            )
        else:
            packets = self._encode_vp8(picture, forced)
        self.stats.frames += 1
        for packet in packets:
            packet.time_base = VIDEO_TIME_BASE
            if packet.is_keyframe:
                self.stats.keyframes += 1
                if forced:
                    self.stats.keyframes_forced += 1
                self.throttle.keyframe_sent()
        return packets

    def _open(self, picture: av.VideoFrame) -> None:
        width, height = picture.width, picture.height
        self._colour = colour_of(picture)
        if self.codec == "H264":
            self._h264 = VideoEncoder(
                width,
                height,
                preset=self.preset,
                bit_rate=self.bit_rate,
                # x264's rate control spends bit_rate / frame rate per picture: without a rate
                # it would take the 90 kHz time base's (a few bits a picture).
                frame_rate=ASSUMED_FPS,
                max_keyframe_interval=GOP_S,
                profile="baseline",
                level=x264_level(self.level_idc),
                x264_params="repeat-headers=1:annexb=1",
                colour=self._colour,
                label=self.label,
            )
        else:
            self._vp8 = self._open_vp8(width, height)
        self._size = (width, height)
        self.stats.opened += 1
        log.info(
            "stream %s: shared %s encoder opened at %dx%d, %d bit/s",
            self.label,
            self.codec,
            width,
            height,
            self.bit_rate,
        )

    def _open_vp8(self, width: int, height: int) -> av.VideoCodecContext:
        ctx = av.CodecContext.create("libvpx", "w")
        ctx.width, ctx.height = width, height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = VIDEO_TIME_BASE
        ctx.framerate = Fraction(ASSUMED_FPS)
        ctx.bit_rate = self.bit_rate
        ctx.gop_size = round(GOP_S * ASSUMED_FPS)
        ctx.qmin, ctx.qmax = 2, 56
        ctx.thread_count = 1
        ctx.options = {
            "deadline": "realtime",
            "cpu-used": "-6",
            "lag-in-frames": "0",
            "bufsize": str(self.bit_rate),  # a one-second buffer
            "minrate": str(self.bit_rate),  # minrate = maxrate: CBR
            "maxrate": str(self.bit_rate),
            "overshoot-pct": "15",
            "undershoot-pct": "100",
            "static-thresh": "1",
        }
        ctx.open()
        return ctx

    def _encode_vp8(self, picture: av.VideoFrame, forced: bool) -> list[av.Packet]:
        assert self._vp8 is not None
        frame = picture
        if frame.format.name != "yuv420p":
            frame = frame.reformat(format="yuv420p", **swscale_target(self._colour))
        frame.pts, frame.time_base = picture.pts, VIDEO_TIME_BASE
        frame.pict_type = PictureType.I if forced else PictureType.NONE
        return list(self._vp8.encode(frame))
