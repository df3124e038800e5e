"""A live MPEG-TS sender independent of our egress: FFmpeg's libx264 and muxer through PyAV.

Frames go in one at a time; the bytes FFmpeg's muxer wrote for each frame come back at once
(``flush_packets``), tagged with where a trickle segment starts and ends. Every segment is its own
container and encoder run (PAT/PMT and an IDR frame first), the way FFmpeg's segment muxer and
go-livepeer's ingest write them. Tests and benchmarks publish these as a gateway would, so what
the runner ingests never comes from the runner's own encoder. ``TsSegmentWriter`` puts those
chunks on a trickle channel, one trickle segment per MPEG-TS segment.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from fractions import Fraction
from typing import cast

import av
import numpy as np
from av.audio.stream import AudioStream
from av.container import OutputContainer
from av.video.stream import VideoStream

from byoc.livepeer.trickle import SegmentWriter, TricklePublisher
from byoc.smoke.pattern import TS_TIME_BASE

_AUDIO_ENCODERS = {"aac": "aac", "opus": "libopus"}


@dataclass
class TsChunk:
    """Bytes of the open segment. ``first``: they open a new segment (begin a trickle segment);
    ``last``: the segment is complete after them (close it); ``data`` may be empty then."""

    segment: int
    data: bytes
    first: bool = False
    last: bool = False


class _Collect:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


class LiveTsEncoder:
    """Pictures (and optional audio frames) in, MPEG-TS chunks out as each is muxed.

    A segment holds ``round(segment_seconds * frame_rate)`` pictures. ``bframes`` > 0 makes the
    stream a real-world one with reordered frames (its chunks then lag the pictures a little).
    """

    def __init__(
        self,
        *,
        frame_rate: int = 30,
        segment_seconds: float = 1.0,
        audio_codec: str | None = None,
        audio_rate: int = 48_000,
        audio_channels: int = 2,
        preset: str = "ultrafast",
        bframes: int = 0,
        crf: int = 23,
    ) -> None:
        self.frame_rate = frame_rate
        self.segment_frames = max(1, round(segment_seconds * frame_rate))
        self.audio_codec = audio_codec
        self.audio_rate = audio_rate
        self.audio_channels = audio_channels
        self._video_options = {"preset": preset, "crf": str(crf), "bf": str(bframes)}
        if bframes == 0:
            self._video_options["tune"] = "zerolatency"
        self.segment = -1
        self._sink = _Collect()
        self._container: OutputContainer | None = None
        self._video: VideoStream | None = None
        self._audio: AudioStream | None = None
        self._resampler: av.AudioResampler | None = None
        self._frames_in_segment = 0
        self._fresh = False

    def video(
        self, picture: np.ndarray, pts: int, *, pixel_format: str = "yuv420p"
    ) -> list[TsChunk]:
        """Encode and mux one picture (packed ``yuv420p`` or ``rgb24``, pts in 90 kHz ticks)."""
        chunks: list[TsChunk] = []
        if pixel_format == "yuv420p":
            height, width = picture.shape[0] * 2 // 3, picture.shape[1]
        else:
            height, width = picture.shape[0], picture.shape[1]
        if self._container is not None and self._frames_in_segment >= self.segment_frames:
            chunks.extend(self._close_segment())
        if self._container is None:
            self._open_segment(width, height)
        assert self._video is not None
        frame = av.VideoFrame.from_ndarray(picture, format=pixel_format)
        frame.pts = pts
        frame.time_base = TS_TIME_BASE
        if self._frames_in_segment == 0:
            frame.pict_type = av.video.frame.PictureType.I
        self._mux(self._video.encode(frame))
        self._frames_in_segment += 1
        chunks.extend(self._take())
        return chunks

    def audio(self, frame: av.AudioFrame) -> list[TsChunk]:
        """Encode and mux one audio frame (pts and time_base set) into the open segment."""
        if self.audio_codec is None:
            raise RuntimeError("this encoder was created without audio")
        if self._audio is None:
            return []  # no segment open yet: audio before the first picture is not sent
        if self._resampler is None:
            ctx = self._audio.codec_context
            self._resampler = av.AudioResampler(
                format=ctx.format,
                layout=ctx.layout,
                rate=ctx.sample_rate,
                frame_size=ctx.frame_size,
            )
        for chunk in self._resampler.resample(frame):
            self._mux(self._audio.encode(chunk))
        return self._take()

    def close(self) -> list[TsChunk]:
        """Drain the encoders and end the open segment."""
        return self._close_segment() if self._container is not None else []

    def _open_segment(self, width: int, height: int) -> None:
        self.segment += 1
        self._container = container = av.open(
            cast(object, self._sink), "w", format="mpegts", options={"flush_packets": "1"}
        )
        video = cast(
            VideoStream,
            container.add_stream("libx264", rate=self.frame_rate, options=self._video_options),
        )
        video.width, video.height = width, height
        video.pix_fmt = "yuv420p"
        video.time_base = TS_TIME_BASE
        video.codec_context.time_base = TS_TIME_BASE
        video.codec_context.gop_size = self.segment_frames + 1
        self._video = video
        if self.audio_codec is not None:
            rate = 48_000 if self.audio_codec == "opus" else self.audio_rate  # Opus: 48 kHz
            audio = cast(
                AudioStream,
                container.add_stream(_AUDIO_ENCODERS[self.audio_codec], rate=rate),
            )
            audio.layout = "mono" if self.audio_channels == 1 else "stereo"
            audio.time_base = Fraction(1, rate)
            self._audio = audio
        self._frames_in_segment = 0
        self._fresh = True

    def _close_segment(self) -> list[TsChunk]:
        assert self._container is not None and self._video is not None
        self._mux(self._video.encode(None))
        if self._audio is not None:
            if self._resampler is not None:
                for chunk in self._resampler.resample(None):
                    self._mux(self._audio.encode(chunk))
            self._mux(self._audio.encode(None))
        self._container.close()
        chunks = self._take()
        tail = TsChunk(self.segment, b"", last=True)
        if chunks and chunks[-1].segment == self.segment:
            chunks[-1].last = True
        else:
            chunks.append(tail)
        self._container = self._video = self._audio = None
        self._resampler = None
        return chunks

    def _mux(self, packets: list[av.Packet]) -> None:
        assert self._container is not None
        self._container.mux(packets)

    def _take(self) -> list[TsChunk]:
        data = self._sink.take()
        if not data and not self._fresh:
            return []
        chunk = TsChunk(self.segment, data, first=self._fresh)
        self._fresh = False
        return [chunk]


class TsSegmentWriter:
    """Writes ``TsChunk``s to a trickle publisher as they come: a chunk marked ``first`` opens a
    trickle segment, one marked ``last`` closes it."""

    def __init__(self, publisher: TricklePublisher) -> None:
        self.publisher = publisher
        self.segments = 0
        self.bytes_sent = 0
        self._writer: SegmentWriter | None = None

    async def write(self, chunks: list[TsChunk]) -> None:
        """Send ``chunks`` in order (trickle errors are raised)."""
        for chunk in chunks:
            if chunk.first:
                if self._writer is not None:
                    await self._writer.close()
                self._writer = await self.publisher.next_segment()
                self.segments += 1
            if chunk.data and self._writer is not None:
                await self._writer.write(chunk.data)
                self.bytes_sent += len(chunk.data)
            if chunk.last and self._writer is not None:
                await self._writer.close()
                self._writer = None

    async def close(self) -> None:
        """End the open segment, if any (the publisher stays open)."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await self._writer.close()
            self._writer = None
