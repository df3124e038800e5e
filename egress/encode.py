"""Encoders for trickle output: H.264 (libx264, zero latency) and Opus. ``egress.live``'s
``LiveSegmenter`` muxes what they produce into live MPEG-TS segments.

Input timestamps are kept: a frame with pts ``p`` in time base ``tb`` leaves as a packet with
pts ``round(p * tb * 90000)``. The cheapest video input is packed ``yuv420p`` planes (one copy
into an ``av.VideoFrame``); ``rgb24`` costs a colour conversion (1-2 ms at 512x512 here).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from av.video.frame import PictureType

from egress.colour import swscale_target, tag_colour
from egress.mux import TS_CLOCK
from ipc.colour import Colour
from ipc.messages import X264_PRESETS

log = logging.getLogger(__name__)

TS_TIME_BASE = Fraction(1, TS_CLOCK)
OPUS_RATE = 48_000
OPUS_FRAME = 960  # 20 ms
PRESETS = X264_PRESETS
NOMINAL_FRAME_RATE = 30
"""The frame rate ``bit_rate`` is budgeted for when no frame rate is declared."""


def to_ts_clock(pts: int, time_base: Fraction) -> int:
    """A timestamp rescaled to the 90 kHz clock (rounded to nearest)."""
    if time_base == TS_TIME_BASE:
        return pts
    return round(pts * time_base * TS_CLOCK)


def video_frame_from_array(
    image: np.ndarray, pixel_format: str, colour: Colour | None = None
) -> av.VideoFrame:
    """Wrap a numpy picture: ``yuv420p`` packed planes ``(h * 3 // 2, w)`` or ``rgb24``
    ``(h, w, 3)``; rgb24 is converted to yuv420p (the encoder's format) with ``colour``'s
    matrix and range (default: what ``Colour.resolved`` picks for the picture's height)."""
    if pixel_format == "yuv420p":
        return av.VideoFrame.from_ndarray(image, format="yuv420p")
    if pixel_format == "rgb24":
        target = (colour or Colour()).resolved(image.shape[0])
        return av.VideoFrame.from_ndarray(image, format="rgb24").reformat(
            format="yuv420p", **swscale_target(target)
        )
    raise ValueError(f"unsupported pixel format {pixel_format!r}")


@dataclass
class EncodeStats:
    """Counters of one encoder."""

    frames: int = 0
    packets: int = 0
    keyframes: int = 0
    dropped_non_increasing_pts: int = 0


class VideoEncoder:
    """libx264 with ``tune=zerolatency``: no B-frames, no lookahead, one packet out per frame in.

    ``preset`` is ``superfast`` by default: at 512x512 and the same CRF it costs 0.6-1.6 ms
    more per frame than ``ultrafast`` (p50 1.5-2.5 vs 0.9 ms on a 2-core VM) for half the
    bytes (0.54 vs 1.06 Mbit/s on the test clip; ``benchmarks/trickle/decode_latency.py``).
    Both are small next to a 33 ms frame budget, while the output goes over the network to the
    orchestrator for every stream. Pass ``preset="ultrafast"`` when CPU is the scarcer resource.
    One thread: sliced threads did not help at this size.
    Keyframes come only when asked for (``force_keyframe``), as IDR frames with SPS/PPS in
    front, or after ``max_keyframe_interval`` seconds; scene-cut keyframes are off so segment
    sizes stay predictable. No frame rate is declared unless ``frame_rate`` is given: the
    stream's timing is its timestamps, which follow the input's (any rate, variable included;
    a declared 30 fps under 60 fps timestamps makes FFmpeg, and so a gateway re-muxing the
    output, drop or reject frames). ``crf`` sets constant quality; ``bit_rate`` (bits/s) switches to a
    VBV-capped average bitrate instead, budgeted per picture for ``frame_rate`` or, without one,
    for ``NOMINAL_FRAME_RATE`` (a 60 fps input then gets about twice ``bit_rate``). ``profile``, ``level`` and ``x264_params`` go to libx264 as
    they are (x264's own defaults when empty).
    """

    def __init__(
        self,
        width: int,
        height: int,
        *,
        preset: str = "superfast",
        crf: int = 23,
        bit_rate: int | None = None,
        frame_rate: int | None = None,
        threads: int = 1,
        max_keyframe_interval: float = 10.0,
        colour: Colour | None = None,
        profile: str = "",
        level: str = "",
        x264_params: str = "",
        label: str = "",
    ) -> None:
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {PRESETS}")
        if width % 2 or height % 2:
            raise ValueError("width and height must be even")
        self.width, self.height = width, height
        self.label = label
        self.stats = EncodeStats()
        self.colour = (colour or Colour()).resolved(height)
        """What the stream's VUI declares, and what pictures in another format are converted
        with."""
        self._last_pts: int | None = None
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height = width, height
        ctx.pix_fmt = "yuv420p"
        ctx.colorspace = self.colour.matrix
        ctx.color_range = self.colour.range
        ctx.color_primaries = self.colour.primaries
        ctx.color_trc = self.colour.transfer
        ctx.time_base = TS_TIME_BASE
        if frame_rate is not None:
            ctx.framerate = Fraction(frame_rate)
        ctx.gop_size = max(1, round(max_keyframe_interval * (frame_rate or NOMINAL_FRAME_RATE)))
        ctx.max_b_frames = 0
        ctx.thread_count = threads
        options = {
            "preset": preset,
            "tune": "zerolatency",
            "forced-idr": "1",
            "sc_threshold": "0",
        }
        for name, value in (("profile", profile), ("level", level), ("x264-params", x264_params)):
            if value:
                options[name] = value
        if bit_rate is None:
            options["crf"] = str(crf)
        else:
            # x264 budgets bit_rate / frame rate per picture. Without a declared rate it takes
            # the 90 kHz time base's, so the rates it is given are scaled by 90000 / the nominal
            # rate: each picture gets bit_rate / NOMINAL_FRAME_RATE while the stream's timing
            # stays what it was (declaring the rate instead writes a fixed rate into the SPS,
            # and x264's variable-rate mode holds every picture until the next one).
            scale = 1 if frame_rate is not None else TS_CLOCK // NOMINAL_FRAME_RATE
            ctx.bit_rate = bit_rate * scale
            if scale == 1:
                options["maxrate"] = str(bit_rate)
                options["bufsize"] = str(bit_rate)
            else:
                # FFmpeg caps its maxrate option at 2^31 bit/s: give x264 its VBV (kbit/s)
                # itself. The buffer is bits, not a rate: one second's worth, unscaled.
                vbv = f"vbv-maxrate={bit_rate * scale // 1000}:vbv-bufsize={bit_rate // 1000}"
                options["x264-params"] = ":".join(p for p in (x264_params, vbv) if p)
        ctx.options = options
        ctx.open()
        self._ctx = ctx

    def encode(
        self,
        image: av.VideoFrame | np.ndarray,
        pts: int,
        time_base: Fraction = TS_TIME_BASE,
        *,
        force_keyframe: bool = False,
        pixel_format: str = "yuv420p",
    ) -> list[av.Packet]:
        """Encode one picture; returns its packet(s), pts/dts in 1/90000.

        ``image`` is an ``av.VideoFrame`` (any format; converted when not yuv420p) or a numpy
        array in ``pixel_format``. Frames whose pts does not increase are dropped (counted).
        """
        ts_pts = to_ts_clock(pts, time_base)
        if self._last_pts is not None and ts_pts <= self._last_pts:
            self.stats.dropped_non_increasing_pts += 1
            return []
        if isinstance(image, np.ndarray):
            frame = video_frame_from_array(image, pixel_format, self.colour)
        elif image.format.name != "yuv420p":
            frame = image.reformat(format="yuv420p", **swscale_target(self.colour))
        else:
            frame = image
        tag_colour(frame, self.colour)
        if frame.width != self.width or frame.height != self.height:
            raise ValueError(
                f"frame is {frame.width}x{frame.height}, encoder is {self.width}x{self.height}"
            )
        frame.pts = ts_pts
        frame.time_base = TS_TIME_BASE
        frame.pict_type = PictureType.I if force_keyframe else PictureType.NONE
        self._last_pts = ts_pts
        self.stats.frames += 1
        return self._count(self._ctx.encode(frame))

    def flush(self) -> list[av.Packet]:
        """Drain the encoder (nothing is held with zerolatency, but be exact)."""
        return self._count(self._ctx.encode(None))

    def _count(self, packets: list[av.Packet]) -> list[av.Packet]:
        for packet in packets:
            self.stats.packets += 1
            if packet.is_keyframe:
                self.stats.keyframes += 1
        return packets


class OpusEncoder:
    """Opus at 48 kHz, 20 ms packets, from audio frames of any rate, format and layout.

    Input timestamps are followed: when an input frame does not start where the previous one
    ended (a gap or a jump), the resampler is drained and restarted at the new pts.
    """

    def __init__(self, *, channels: int = 2, bit_rate: int | None = None, label: str = "") -> None:
        if channels not in (1, 2):
            raise ValueError("channels must be 1 or 2")
        self.channels = channels
        self.label = label
        self.stats = EncodeStats()
        layout = "mono" if channels == 1 else "stereo"
        ctx = av.CodecContext.create("libopus", "w")
        ctx.sample_rate = OPUS_RATE
        ctx.layout = layout
        ctx.format = "flt"
        ctx.time_base = Fraction(1, OPUS_RATE)
        ctx.bit_rate = bit_rate or 48_000 * channels
        ctx.open()
        self._ctx = ctx
        self._layout = layout
        self._resampler: av.AudioResampler | None = None
        self._expected: Fraction | None = None  # start time (s) of the next input frame

    def _new_resampler(self) -> av.AudioResampler:
        return av.AudioResampler(
            format="flt", layout=self._layout, rate=OPUS_RATE, frame_size=OPUS_FRAME
        )

    def encode(self, frame: av.AudioFrame) -> list[av.Packet]:
        """Encode one frame (with ``pts`` and ``time_base`` set); packets have pts in 1/48000."""
        if frame.pts is None or frame.time_base is None:
            raise ValueError("audio frames need pts and time_base")
        start = frame.pts * frame.time_base
        packets: list[av.Packet] = []
        tolerance = Fraction(1, 50)
        if self._resampler is None or (
            self._expected is not None and abs(start - self._expected) > tolerance
        ):
            if self._resampler is not None:
                packets.extend(self._drain_resampler())
            self._resampler = self._new_resampler()
        self._expected = start + Fraction(frame.samples, frame.sample_rate)
        for chunk in self._resampler.resample(frame):
            packets.extend(self._ctx.encode(chunk))
        self.stats.frames += 1
        self.stats.packets += len(packets)
        return packets

    def flush(self) -> list[av.Packet]:
        """Encode what the resampler holds (padded) and drain the encoder."""
        packets = self._drain_resampler() if self._resampler is not None else []
        packets.extend(self._ctx.encode(None))
        self.stats.packets += len(packets)
        return packets

    def _drain_resampler(self) -> list[av.Packet]:
        assert self._resampler is not None
        packets: list[av.Packet] = []
        for chunk in self._resampler.resample(None):
            if chunk.samples < OPUS_FRAME:
                chunk = _pad_audio(chunk, OPUS_FRAME)
            packets.extend(self._ctx.encode(chunk))
        self._resampler = None
        return packets


def _pad_audio(frame: av.AudioFrame, samples: int) -> av.AudioFrame:
    data = frame.to_ndarray()  # packed flt: (1, samples * channels)
    channels = frame.layout.nb_channels
    padded = np.zeros((1, samples * channels), dtype=data.dtype)
    padded[:, : data.shape[1]] = data
    out = av.AudioFrame.from_ndarray(padded, format=frame.format.name, layout=frame.layout.name)
    out.sample_rate = frame.sample_rate
    out.pts = frame.pts
    out.time_base = frame.time_base
    return out
