"""An uploaded clip file as a stream source, read at its own frame rate.

The file is demuxed and decoded with PyAV (FFmpeg's demuxers: MP4, MPEG-TS, WebM, ...). Each
picture is released into the ring when its presentation time comes, measured from the first
one, so the rest of the pipeline sees the clip as it would see a live source. One picture is
decoded ahead, which is how the last one is known and flagged ``END_OF_STREAM``.

Audio packets are forwarded undecoded, as a live source's are: AAC as ADTS frames (a header is
added when the container stores raw AAC, as MP4 does) and Opus packets as they are. Other audio
codecs are not forwarded (counted as ``audio_unsupported``).

Timestamps of a clip are not stamped by a network: ``INGEST_FIRST_BYTE`` and ``DECODED`` are the
moment the picture is released (its decode happened up to one frame earlier, off the clock).
"""

from __future__ import annotations

import asyncio
import logging
import time
from fractions import Fraction
from typing import TYPE_CHECKING

import av
from av.audio.stream import AudioStream

from ingest.decoded import TS_CLOCK
from ipc.messages import DropReason, StreamPartState

if TYPE_CHECKING:
    from ingest.ring_sink import RingSink

log = logging.getLogger(__name__)

_ADTS_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)
_DEFAULT_FPS = 30
CLIP_BACKPRESSURE_POLL_S = 0.002


def is_adts(data: bytes) -> bool:
    """Whether ``data`` starts with an ADTS sync word."""
    return len(data) >= 7 and data[0] == 0xFF and data[1] & 0xF6 == 0xF0


def adts_header(payload_size: int, object_type: int, rate_index: int, channel_config: int) -> bytes:
    """A 7-byte ADTS header (MPEG-4, no CRC) for one raw AAC frame of ``payload_size`` bytes."""
    length = payload_size + 7
    profile = max(0, min(3, object_type - 1))
    return bytes(
        [
            0xFF,
            0xF1,
            (profile << 6) | ((rate_index & 0x0F) << 2) | ((channel_config >> 2) & 0x01),
            ((channel_config & 0x03) << 6) | ((length >> 11) & 0x03),
            (length >> 3) & 0xFF,
            ((length & 0x07) << 5) | 0x1F,
            0xFC,
        ]
    )


def aac_config(stream: AudioStream) -> tuple[int, int, int]:
    """``(object type, sampling index, channel configuration)`` of an AAC stream, from its
    AudioSpecificConfig when the container has one. HE-AAC maps to its AAC-LC core (decoders
    find the SBR layer implicitly)."""
    ctx = stream.codec_context
    rate = ctx.sample_rate or 48000
    channels = ctx.layout.nb_channels or 2
    object_type = 2
    rate_index = _ADTS_RATES.index(rate) if rate in _ADTS_RATES else 3
    channel_config = channels if channels <= 7 else 2
    extradata = ctx.extradata or b""
    if len(extradata) >= 2:
        found_type = extradata[0] >> 3
        found_index = ((extradata[0] & 0x07) << 1) | (extradata[1] >> 7)
        found_channels = (extradata[1] >> 3) & 0x0F
        if found_type in (1, 2, 3, 4):
            object_type = found_type
        if found_index < len(_ADTS_RATES):
            rate_index = found_index
        if found_channels:
            channel_config = found_channels
    return object_type, rate_index, channel_config


class ClipSource:
    """A clip file decoded into a :class:`~ingest.ring_sink.RingSink` at its own pace."""

    def __init__(
        self, stream_id: str, path: str, *, audio: bool = True, speed: float = 1.0
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.stream_id = stream_id
        self.path = path
        self.audio = audio
        self.speed = speed
        self.decode_errors = 0
        self.audio_unsupported = 0
        self.frames = 0
        self._t0 = 0.0
        self._pts0 = 0
        self._last_pts: int | None = None
        self._frame_ticks = TS_CLOCK // _DEFAULT_FPS
        self._aac: tuple[int, int, int] | None = None

    def counters(self) -> dict[DropReason, int]:
        out: dict[DropReason, int] = {"decode_error": self.decode_errors}
        if self.audio_unsupported:
            out["audio_unsupported"] = self.audio_unsupported
        return out

    async def run(self, sink: RingSink) -> StreamPartState:
        """Play the clip into ``sink``; returns ``"completed"`` after the last frame."""
        container = av.open(self.path)
        try:
            if not container.streams.video:
                raise ValueError(f"clip {self.path!r} has no video stream")
            video = container.streams.video[0]
            rate = video.average_rate or video.base_rate
            if rate:
                self._frame_ticks = max(1, round(TS_CLOCK / Fraction(rate)))
            audio: AudioStream | None = None
            if self.audio and sink.audio_enabled and container.streams.audio:
                audio = container.streams.audio[0]
                if audio.codec_context.name == "aac":
                    self._aac = aac_config(audio)
            streams = [video] if audio is None else [video, audio]
            log.info(
                "stream %s: clip %s, %dx%d at %s fps%s",
                self.stream_id,
                self.path,
                video.codec_context.width,
                video.codec_context.height,
                rate,
                f", audio {audio.codec_context.name}" if audio is not None else "",
            )
            pending: av.VideoFrame | None = None
            for packet in container.demux(*streams):
                if packet.stream is audio:
                    await self._audio(packet, audio, sink)
                    continue
                try:
                    frames = packet.decode()
                except av.FFmpegError as exc:
                    self.decode_errors += 1
                    log.warning("stream %s: clip decode error: %s", self.stream_id, exc)
                    continue
                for frame in frames:
                    if not isinstance(frame, av.VideoFrame):
                        continue
                    if pending is not None:
                        await self._emit(pending, sink, end_of_stream=False)
                    pending = frame
            if pending is None:
                raise ValueError(f"clip {self.path!r} has no decodable video frame")
            await self._emit(pending, sink, end_of_stream=True)
            log.info("stream %s: clip played, %d frames", self.stream_id, self.frames)
            return "completed"
        finally:
            container.close()

    def _pts90(self, frame: av.VideoFrame) -> int:
        if frame.pts is not None and frame.time_base is not None:
            pts = round(frame.pts * frame.time_base * TS_CLOCK)
        elif self._last_pts is not None:
            pts = self._last_pts + self._frame_ticks
        else:
            pts = 0
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + self._frame_ticks  # keep pts increasing for the encoder
        self._last_pts = pts
        return pts

    async def _emit(self, frame: av.VideoFrame, sink: RingSink, *, end_of_stream: bool) -> None:
        pts = self._pts90(frame)
        if self.frames == 0:
            self._t0, self._pts0 = time.monotonic(), pts
        due = self._t0 + (pts - self._pts0) / TS_CLOCK / self.speed
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        await self._wait_for_room(sink)
        now = time.monotonic_ns()
        await sink.video(
            frame,
            pts=pts,
            keyframe=bool(frame.key_frame),
            received_ns=now,
            decoded_ns=now,
            end_of_stream=end_of_stream,
        )
        self.frames += 1

    async def _wait_for_room(self, sink: RingSink) -> None:
        """A clip is not live: rather than let the ring drop a frame, wait while the consumer
        is behind (it keeps one slot pinned, so one slot must stay free)."""
        ring = sink.writer.ring
        # The reader's progress lives in shared memory with no wake-up towards the writer: poll.
        while ring.stats().unread >= ring.spec.slots - 1:  # noqa: ASYNC110
            await asyncio.sleep(CLIP_BACKPRESSURE_POLL_S)

    async def _audio(self, packet: av.Packet, stream: AudioStream, sink: RingSink) -> None:
        if packet.pts is None or packet.time_base is None or packet.size == 0:
            return
        ctx = stream.codec_context
        name = ctx.name
        data = bytes(packet)
        pts = round(packet.pts * packet.time_base * TS_CLOCK)
        channels = ctx.layout.nb_channels or 2
        if name == "aac":
            if not is_adts(data):
                assert self._aac is not None
                data = adts_header(len(data), *self._aac) + data
            await sink.audio("aac", pts, data, ctx.sample_rate or 48000, channels)
        elif name == "opus":
            await sink.audio("opus", pts, data, 48000, channels)
        else:
            if not self.audio_unsupported:
                log.warning(
                    "stream %s: clip audio %s is not forwarded (AAC or Opus only)",
                    self.stream_id,
                    name,
                )
            self.audio_unsupported += 1
