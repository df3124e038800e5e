"""A viewer's decoder for MPEG-TS segments as they arrive, for tests and benchmarks.

``SegmentStreamDecoder``: bytes of consecutive MPEG-TS segments in, decoded frames out as soon as
each frame's last byte has arrived (so a viewer can stamp when it could first show a frame). It
puts ingest's demuxer, timeline and video decoder together with an audio decoder; the runner's
own input path is ``ingest.stream.TrickleSource``, which forwards audio undecoded.
"""

from __future__ import annotations

import logging
import time
from typing import cast

import av
from av.audio.codeccontext import AudioCodecContext

from ingest.decode import (
    DecodeStats,
    Timeline,
    VideoDecoder,
    split_adts,
    split_ts_opus,
    to_av_packet,
)
from ingest.decoded import TS_TIME_BASE, DecodedAudio, DecodedVideo
from ingest.tsdemux import EsPacket, TsDemuxer

log = logging.getLogger(__name__)

_MASK33 = (1 << 33) - 1


class AudioDecoder:
    """AAC (ADTS) or Opus-in-TS decoder fed with demuxed PES payloads."""

    def __init__(self, codec: str, *, channels: int | None = None, label: str = "") -> None:
        if codec not in ("aac", "opus"):
            raise ValueError(f"unsupported audio codec {codec!r}")
        self.codec = codec
        self.label = label
        self.stats = DecodeStats()
        self._ctx = cast(AudioCodecContext, av.CodecContext.create(codec, "r"))
        if codec == "opus":
            self._ctx.sample_rate = 48000
            self._ctx.layout = "mono" if channels == 1 else "stereo"
        self._split = split_adts if codec == "aac" else split_ts_opus

    def decode(self, packet: EsPacket) -> list[DecodedAudio]:
        """Decode every audio frame in one PES payload."""
        self.stats.packets += 1
        out: list[DecodedAudio] = []
        offset = 0
        for data, rate, samples in self._split(packet.data):
            pts = None
            if packet.pts is not None:
                pts = packet.pts + (offset * 90_000) // rate
            offset += samples
            try:
                frames = self._ctx.decode(to_av_packet(packet, data, pts))
            except av.FFmpegError as exc:
                self.stats.errors += 1
                log.warning("%s: audio decode error: %s", self.label, exc)
                continue
            for frame in frames:
                out.append(self._output(frame, packet, pts))
        return out

    def _output(self, frame: av.AudioFrame, packet: EsPacket, pts: int | None) -> DecodedAudio:
        self.stats.frames += 1
        frame_pts = frame.pts if frame.pts is not None else (pts or 0)
        source_pts = None
        if packet.source_pts is not None and packet.pts is not None:
            source_pts = (frame_pts - packet.pts + packet.source_pts) & _MASK33
        return DecodedAudio(
            frame=frame,
            pts=frame_pts,
            source_pts=source_pts,
            time_base=TS_TIME_BASE,
            sample_rate=frame.sample_rate,
            channels=frame.layout.nb_channels,
            samples=frame.samples,
            discontinuity=packet.discontinuity,
            segment=packet.segment,
            received_ns=packet.received_ns,
            decoded_ns=time.monotonic_ns(),
        )


class SegmentStreamDecoder:
    """Bytes of consecutive MPEG-TS segments in, decoded frames out, with no frame held back.

    Call ``feed`` with whatever bytes arrived, ``flush_pending`` whenever the reader has no
    more bytes right now, ``new_segment`` at each segment boundary and ``close`` at the end of
    the stream. Each returns the frames it completed, in decode order.
    """

    def __init__(
        self,
        *,
        pixel_format: str | None = "yuv420p",
        audio: bool = True,
        video_threads: int = 1,
        label: str = "",
        timeline: Timeline | None = None,
    ) -> None:
        self.label = label
        self.demuxer = TsDemuxer(label=label)
        self.timeline = timeline or Timeline()
        self.video = VideoDecoder(pixel_format=pixel_format, threads=video_threads, label=label)
        self.audio: AudioDecoder | None = None
        self._decode_audio = audio

    def feed(self, data: bytes | bytearray | memoryview) -> list[DecodedVideo | DecodedAudio]:
        """Parse and decode newly arrived bytes."""
        return self._decode(self.demuxer.feed(data))

    def flush_pending(self) -> list[DecodedVideo | DecodedAudio]:
        """The reader has nothing more for now: decode frames whose end is implied."""
        return self._decode(self.demuxer.flush_pending())

    def new_segment(self) -> list[DecodedVideo | DecodedAudio]:
        """The previous segment ended (cleanly or not); the next bytes start a new one."""
        return self._decode(self.demuxer.new_segment())

    def close(self) -> list[DecodedVideo | DecodedAudio]:
        """End of stream: decode what is left and drain the decoders."""
        out = self._decode(self.demuxer.flush())
        out.extend(self.video.flush())
        return out

    def stats(self) -> dict[str, int]:
        """Demuxer, timeline and decoder counters in one flat dict."""
        out = {f"demux_{k}": v for k, v in vars(self.demuxer.stats).items()}
        out["timeline_discontinuities"] = self.timeline.discontinuities
        out.update({f"video_{k}": v for k, v in vars(self.video.stats).items()})
        if self.audio is not None:
            out.update({f"audio_{k}": v for k, v in vars(self.audio.stats).items()})
        return out

    def _decode(self, packets: list[EsPacket]) -> list[DecodedVideo | DecodedAudio]:
        out: list[DecodedVideo | DecodedAudio] = []
        for packet in packets:
            stream = packet.stream
            if stream.kind == "video":
                self.timeline.map(packet)
                out.extend(self.video.decode(packet))
            elif self._decode_audio:
                if self.audio is None or self.audio.codec != stream.codec:
                    self.audio = AudioDecoder(
                        stream.codec, channels=stream.channels, label=self.label
                    )
                self.timeline.map(packet)
                out.extend(self.audio.decode(packet))
        return out
