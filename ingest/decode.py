"""Decoding pieces of the trickle input path (``ingest.stream.TrickleSource`` puts them together):
a :class:`Timeline` that keeps timestamps increasing across discontinuities, the H.264
:class:`VideoDecoder` fed packet by packet (a PyAV codec context, not FFmpeg's demuxer), and the
AAC/Opus splitters that cut a PES payload into the frames forwarded as audio.

Video decoding is single-threaded by default: frame threading would hold ``threads - 1``
frames back, which is exactly the latency this path exists to avoid.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import cast

import av
import numpy as np
from av.video.codeccontext import VideoCodecContext

from ingest.decoded import TS_TIME_BASE, DecodedVideo
from ingest.tsdemux import EsPacket

log = logging.getLogger(__name__)

_MASK33 = (1 << 33) - 1
_HALF33 = 1 << 32
_MAX_IN_FLIGHT = 64
VIDEO_PIXEL_FORMATS = (None, "yuv420p", "rgb24")


def _signed33(value: int) -> int:
    """Difference of two 33-bit timestamps, wrapped into ``[-2**32, 2**32)``."""
    value &= _MASK33
    return value - (1 << 33) if value >= _HALF33 else value


class Timeline:
    """Maps stream timestamps (90 kHz, 33-bit) onto an increasing ingest timeline.

    Timestamps pass through unchanged until the stream jumps: backwards by more than
    ``backward_tolerance`` or forwards by more than ``max_gap`` (a publisher restart, a new
    source). The timeline then resumes one step after the last timestamp it handed out, for all
    streams alike, so audio and video stay aligned. 33-bit wrap-around is unwrapped.
    """

    def __init__(self, *, backward_tolerance: int = 9_000, max_gap: int = 10 * 90_000) -> None:
        self.backward_tolerance = backward_tolerance
        self.max_gap = max_gap
        self.discontinuities = 0
        self._ref_raw: int | None = None
        self._ref_out = 0
        self._last_out: dict[int, int] = {}
        self._step: dict[int, int] = {}
        self._epoch = 0
        self._pid_epoch: dict[int, int] = {}

    def map(self, packet: EsPacket) -> None:
        """Rewrite ``packet.pts``/``dts`` in place; sets ``packet.discontinuity``."""
        pts, dts = packet.pts, packet.dts
        raw = dts if dts is not None else pts
        if raw is None:
            return
        pid = packet.stream.pid
        if self._ref_raw is None:
            self._ref_raw, self._ref_out = raw, raw
        out = self._ref_out + _signed33(raw - self._ref_raw)
        discontinuity = False
        last = self._last_out.get(pid)
        if last is not None:
            if self._pid_epoch.get(pid) != self._epoch:
                discontinuity = True  # another stream already jumped; follow it unchecked
            else:
                step = out - last
                if step < -self.backward_tolerance or step > self.max_gap:
                    discontinuity = True
                    self.discontinuities += 1
                    self._epoch += 1
                    out = max(t + self._step.get(p, 1) for p, t in self._last_out.items())
                elif step > 0:
                    self._step[pid] = step
        self._ref_raw, self._ref_out = raw, out
        self._last_out[pid] = out
        self._pid_epoch[pid] = self._epoch
        packet.dts = out
        packet.pts = out if pts is None or dts is None else out + _signed33(pts - dts)
        packet.discontinuity = discontinuity


@dataclass
class DecodeStats:
    """Counters of one decoder."""

    packets: int = 0
    frames: int = 0
    skipped_before_keyframe: int = 0  # packets dropped while waiting for a keyframe
    errors: int = 0  # packets the codec rejected


@dataclass(slots=True)
class _InFlight:
    source_pts: int | None
    keyframe: bool
    discontinuity: bool
    segment: int
    received_ns: int


def to_av_packet(packet: EsPacket, data: bytes, pts: int | None) -> av.Packet:
    """A PyAV packet of ``data`` carrying ``packet``'s timestamps (``pts`` overrides its pts)."""
    out = av.Packet(data)
    out.pts = pts
    out.dts = packet.dts if pts == packet.pts else pts
    out.time_base = TS_TIME_BASE
    return out


def yuv420p_array(frame: av.VideoFrame, out: np.ndarray | None = None) -> np.ndarray:
    """Packed yuv420p planes ``(height * 3 // 2, width)`` of a frame, one copy per plane.

    ``out`` may be a preallocated destination (a ring slot); frames in another format are
    converted first.
    """
    if frame.format.name != "yuv420p":
        frame = frame.reformat(format="yuv420p")
    w, h = frame.width, frame.height
    if out is None:
        out = np.empty((h * 3 // 2, w), dtype=np.uint8)
    planes = frame.planes
    luma = planes[0]
    np.copyto(
        out[:h],
        np.frombuffer(memoryview(luma), np.uint8).reshape(h, luma.line_size)[:, :w],
        casting="no",
    )
    chroma = out[h:].reshape(2, h // 2, w // 2)
    for index in (1, 2):
        plane = planes[index]
        src = np.frombuffer(memoryview(plane), np.uint8).reshape(h // 2, plane.line_size)[
            :, : w // 2
        ]
        np.copyto(chroma[index - 1], src, casting="no")
    return out


class VideoDecoder:
    """H.264 decoder fed with demuxed packets.

    Drops packets until the first keyframe, and again after a packet the demuxer had to drop
    (``EsPacket.after_loss``), a rejected packet or ``request_keyframe()``, counting them: a
    short freeze instead of smeared pictures. ``pixel_format`` chooses what ``DecodedVideo.array``
    holds: ``"yuv420p"`` (cheap: plane copies), ``"rgb24"`` (a colour conversion, ~0.3 ms at
    512x512) or ``None`` (no array; use ``DecodedVideo.frame``).
    """

    def __init__(
        self,
        codec: str = "h264",
        *,
        pixel_format: str | None = "yuv420p",
        threads: int = 1,
        label: str = "",
    ) -> None:
        if pixel_format not in VIDEO_PIXEL_FORMATS:
            raise ValueError(f"pixel_format must be one of {VIDEO_PIXEL_FORMATS}")
        self.codec = codec
        self.pixel_format = pixel_format
        self.label = label
        self.stats = DecodeStats()
        self._threads = threads
        self._ctx = self._open()
        self._need_keyframe = True
        self._in_flight: dict[int | None, _InFlight] = {}

    def _open(self) -> VideoCodecContext:
        ctx = cast(VideoCodecContext, av.CodecContext.create(self.codec, "r"))
        ctx.thread_count = self._threads
        if self._threads != 1:
            ctx.thread_type = "SLICE"
        return ctx

    def request_keyframe(self) -> None:
        """Ignore packets until the next keyframe (references were lost)."""
        self._need_keyframe = True

    def decode(self, packet: EsPacket) -> list[DecodedVideo]:
        """Decode one access unit; returns the pictures it completed (usually one)."""
        self.stats.packets += 1
        if packet.after_loss:
            self._need_keyframe = True
        if self._need_keyframe:
            if not packet.keyframe:
                self.stats.skipped_before_keyframe += 1
                return []
            self._need_keyframe = False
        if len(self._in_flight) >= _MAX_IN_FLIGHT:
            self._in_flight.clear()
        self._in_flight[packet.pts] = _InFlight(
            packet.source_pts,
            packet.keyframe,
            packet.discontinuity,
            packet.segment,
            packet.received_ns,
        )
        try:
            frames = self._ctx.decode(to_av_packet(packet, packet.data, packet.pts))
        except av.FFmpegError as exc:
            self.stats.errors += 1
            self._need_keyframe = True
            log.warning("%s: video decode error, waiting for a keyframe: %s", self.label, exc)
            return []
        return [self._output(frame) for frame in frames]

    def flush(self) -> list[DecodedVideo]:
        """End of stream: return pictures the codec still holds (B-frame reordering)."""
        try:
            frames = self._ctx.decode(None)
        except av.FFmpegError:
            frames = []
        self._ctx = self._open()
        self._need_keyframe = True
        return [self._output(frame) for frame in frames]

    def _output(self, frame: av.VideoFrame) -> DecodedVideo:
        meta = self._in_flight.pop(frame.pts, None)
        if meta is None:
            meta = _InFlight(frame.pts, frame.key_frame, False, -1, time.monotonic_ns())
        if self.pixel_format == "yuv420p":
            array: np.ndarray | None = yuv420p_array(frame)
        elif self.pixel_format == "rgb24":
            array = frame.to_ndarray(format="rgb24")
        else:
            array = None
        self.stats.frames += 1
        pts = frame.pts if frame.pts is not None else 0
        return DecodedVideo(
            frame=frame,
            array=array,
            pixel_format=self.pixel_format or frame.format.name,
            width=frame.width,
            height=frame.height,
            pts=pts,
            source_pts=meta.source_pts,
            time_base=TS_TIME_BASE,
            keyframe=meta.keyframe,
            discontinuity=meta.discontinuity,
            segment=meta.segment,
            received_ns=meta.received_ns,
            decoded_ns=time.monotonic_ns(),
        )


# ---------------------------------------------------------------------------------- audio

_ADTS_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)


def split_adts(data: bytes) -> list[tuple[bytes, int, int]]:
    """Split a PES payload into ADTS frames: ``(frame, sample_rate, samples)`` each."""
    out: list[tuple[bytes, int, int]] = []
    i, size = 0, len(data)
    while i + 7 <= size:
        if data[i] != 0xFF or data[i + 1] & 0xF6 != 0xF0:
            i += 1
            continue
        length = ((data[i + 3] & 0x03) << 11) | (data[i + 4] << 3) | (data[i + 5] >> 5)
        rate_index = (data[i + 2] >> 2) & 0x0F
        if length < 7 or i + length > size or rate_index >= len(_ADTS_RATES):
            break
        blocks = (data[i + 6] & 0x03) + 1
        out.append((data[i : i + length], _ADTS_RATES[rate_index], 1024 * blocks))
        i += length
    return out


def opus_packet_samples(packet: bytes) -> int:
    """Duration of an Opus packet in 48 kHz samples, from its TOC byte (RFC 6716 3.1)."""
    if not packet:
        return 0
    toc = packet[0]
    config = toc >> 3
    if config < 12:
        frame = (480, 960, 1920, 2880)[config & 3]
    elif config < 16:
        frame = (480, 960)[config & 1]
    else:
        frame = (120, 240, 480, 960)[config & 3]
    code = toc & 3
    if code == 0:
        count = 1
    elif code < 3:
        count = 2
    else:
        count = packet[1] & 0x3F if len(packet) > 1 else 0
    return frame * count


def split_ts_opus(data: bytes) -> list[tuple[bytes, int, int]]:
    """Split a PES payload of Opus-in-TS access units (control header + packet, as in ETSI TS
    102 366 / FFmpeg) into ``(packet, 48000, samples)``."""
    out: list[tuple[bytes, int, int]] = []
    i, size = 0, len(data)
    while i + 2 <= size:
        if data[i] != 0x7F or data[i + 1] & 0xE0 != 0xE0:
            break
        flags = data[i + 1]
        i += 2
        au_size = 0
        while i < size:
            byte = data[i]
            i += 1
            au_size += byte
            if byte != 0xFF:
                break
        if flags & 0x10:
            i += 2  # start trim
        if flags & 0x08:
            i += 2  # end trim
        if flags & 0x04 and i < size:
            i += 1 + data[i]  # control extension
        if i + au_size > size:
            break
        packet = data[i : i + au_size]
        out.append((packet, 48000, opus_packet_samples(packet)))
        i += au_size
    return out
