"""Pictures and the input's audio in, MPEG-TS chunks for live trickle segments out.

Video: libx264 zerolatency (``VideoEncoder``) with each frame's own pts; every segment opens with
a forced IDR frame (``SegmentMuxer``). The stream's VUI declares the pictures' colour
description (BT.709 for HD, BT.601 below, when the input said nothing). A new picture size or
colour description restarts the encoder in a new segment, and so does a frame flagged as a
discontinuity whose pts went backwards (an input restarted).

Audio: the output gets an Opus track when the stream has audio. Nothing waits for it: the first
picture goes out at once, with a track if audio arrived before it. When audio arrives later,
the next picture ends the segment and opens a new one (forced keyframe) whose PMT has the
track, so a stream without audio pays nothing and one whose audio lags loses at most a segment
of it. Opus input with the track's channel count passes through untouched; anything else (AAC,
or Opus with another layout) is decoded and encoded to Opus. Packets are interleaved with the
video by pts (``AudioInterleaver``).
"""

from __future__ import annotations

import logging
from collections import deque
from fractions import Fraction

import av

from egress.audio import AudioInterleaver, StreamAudioDecoder
from egress.colour import colour_of
from egress.encode import OPUS_RATE, TS_TIME_BASE, OpusEncoder, VideoEncoder, to_ts_clock
from egress.mux import MuxChunk, SegmentMuxer
from ipc.messages import DropReason, StreamAudio

log = logging.getLogger(__name__)

_OPUS_TIME_BASE = Fraction(1, OPUS_RATE)
_MAX_EARLY_AUDIO = 250  # StreamAudio kept before the first picture (~5 s)
_DEFAULT_FRAME_TICKS = 3_000  # 30 fps in 90 kHz


class LiveSegmenter:
    """One stream's live encoder and muxer (see the module docstring)."""

    def __init__(
        self,
        *,
        segment_seconds: float = 1.0,
        audio: bool = True,
        preset: str = "superfast",
        crf: int = 23,
        bit_rate: int = 0,
        label: str = "",
    ) -> None:
        self.segment_seconds = segment_seconds
        self.audio_wanted = audio
        self.label = label
        self.muxer: SegmentMuxer | None = None
        self.encoder: VideoEncoder | None = None
        self.audio_channels: int | None = None
        """Channels of the output's Opus track; None: no audio track (decided at the first
        picture)."""
        self.encoder_restarts = 0
        self.audio_tracks_added = 0
        """Times the output was re-opened with an audio track that arrived late."""
        self.accepted = False
        """Whether the last picture was encoded (not dropped for its pts)."""
        self.counters: dict[DropReason, int] = {}
        self._video_options = {"preset": preset, "crf": crf, "bit_rate": bit_rate or None}
        self._early_audio: deque[StreamAudio] = deque()
        self._decoder = StreamAudioDecoder(label=label)
        self._opus: OpusEncoder | None = None
        self._interleaver = AudioInterleaver()
        self._first_pts: int | None = None
        self._last_pts: int | None = None
        self._last_audio_pts: int | None = None
        self._frame_ticks = _DEFAULT_FRAME_TICKS
        self._rejected_before = 0

    def dropped(self) -> dict[DropReason, int]:
        """Drop counters (totals)."""
        out = dict(self.counters)
        rejected = self._rejected_before
        if self.encoder is not None:
            rejected += self.encoder.stats.dropped_non_increasing_pts
        out["non_increasing_pts"] = rejected
        out["audio_overflow"] = self._interleaver.dropped + out.get("audio_overflow", 0)
        out["audio_decode_error"] = self._decoder.errors
        if self.muxer is not None:
            out["before_keyframe"] = self.muxer.stats.video_dropped_before_keyframe
        return out

    def _count(self, reason: DropReason, n: int = 1) -> None:
        if n:
            self.counters[reason] = self.counters.get(reason, 0) + n

    # -- audio ------------------------------------------------------------------------------

    def audio(self, message: StreamAudio) -> None:
        """Take one audio packet of the input (pts in 90 kHz)."""
        if not self.audio_wanted:
            return
        if self.muxer is None or self.audio_channels is None:
            # Before the first picture, or the output has no audio track yet: hold it (the next
            # picture opens a new segment with a track for it).
            if len(self._early_audio) >= _MAX_EARLY_AUDIO:
                self._early_audio.popleft()
                self._count("audio_overflow")
            self._early_audio.append(message)
            return
        if message.codec == "opus" and message.channels == self.audio_channels:
            self._interleaver.push(message.pts, message.data)
            return
        for frame in self._decoder.decode(message):
            self._encode_audio(frame)

    def _encode_audio(self, frame: av.AudioFrame) -> None:
        if self._opus is None:
            assert self.audio_channels is not None
            self._opus = OpusEncoder(channels=self.audio_channels, label=self.label)
        for packet in self._opus.encode(frame):
            self._push_opus(packet)

    def _push_opus(self, packet: av.Packet) -> None:
        if packet.pts is None:
            return
        pts = to_ts_clock(packet.pts, packet.time_base or _OPUS_TIME_BASE)
        self._interleaver.push(pts, bytes(packet))

    # -- video ------------------------------------------------------------------------------

    def video(
        self, frame: av.VideoFrame, pts: int, *, discontinuity: bool = False
    ) -> list[MuxChunk]:
        """Encode and mux one picture (pts in 90 kHz) and the audio up to its end."""
        chunks: list[MuxChunk] = []
        if self.muxer is not None and self.audio_channels is None and self._early_audio:
            # Audio showed up after the output started without a track: end the segment here;
            # the next one (this picture, forced to a keyframe) has an audio track.
            chunks.extend(self.muxer.close())
            self.muxer = None
            self.audio_tracks_added += 1
        if self.muxer is None:
            self._open()
        assert self.muxer is not None
        encoder = self.encoder
        size = (frame.width, frame.height)
        colour = colour_of(frame).resolved(frame.height)
        jumped_back = discontinuity and self._last_pts is not None and pts <= self._last_pts
        if (
            encoder is None
            or (encoder.width, encoder.height) != size
            or encoder.colour != colour
            or jumped_back
        ):
            if encoder is not None:
                chunks.extend(self._mux_video(encoder.flush()))
                chunks.extend(self.muxer.close())
                self._rejected_before += encoder.stats.dropped_non_increasing_pts
                self.encoder_restarts += 1
                if jumped_back:
                    self._last_audio_pts = None
                log.info(
                    "stream %s: new encoder for %dx%d%s",
                    self.label,
                    *size,
                    " after a timestamp jump" if jumped_back else "",
                )
            encoder = self.encoder = VideoEncoder(
                frame.width,
                frame.height,
                colour=colour,
                label=self.label,
                **self._video_options,  # type: ignore[arg-type]
            )
        force = self.muxer.segment_due(pts)
        rejected = encoder.stats.dropped_non_increasing_pts
        chunks.extend(
            self._mux_video(encoder.encode(frame, pts, TS_TIME_BASE, force_keyframe=force))
        )
        self.accepted = encoder.stats.dropped_non_increasing_pts == rejected
        if not self.accepted:
            return chunks
        if self._first_pts is None:
            self._first_pts = pts
            self._count("audio_before_video", self._interleaver.discard_before(pts))
        elif self._last_pts is not None and 0 < pts - self._last_pts < 90_000:
            self._frame_ticks = pts - self._last_pts
        self._last_pts = pts
        chunks.extend(self._mux_audio(self._interleaver.due(pts + self._frame_ticks)))
        return chunks

    def idle(self) -> list[MuxChunk]:
        """No picture for a while: mux the audio that waited too long."""
        if self.muxer is None:
            return []
        return self._mux_audio(self._interleaver.due(None))

    def close(self) -> list[MuxChunk]:
        """End of the output: drain the encoders and the held audio, end the open segment."""
        if self.muxer is None:
            return []
        chunks: list[MuxChunk] = []
        if self.encoder is not None:
            chunks.extend(self._mux_video(self.encoder.flush()))
        if self._opus is not None:
            for packet in self._opus.flush():
                self._push_opus(packet)
        chunks.extend(self._mux_audio(self._interleaver.drain()))
        chunks.extend(self.muxer.close())
        return chunks

    def _open(self) -> None:
        """The first picture: fix the audio track from what arrived so far."""
        if self.audio_wanted and self._early_audio:
            first = self._early_audio[0]
            self.audio_channels = first.channels if first.channels in (1, 2) else 2
        self.muxer = SegmentMuxer(
            segment_seconds=self.segment_seconds,
            audio_channels=self.audio_channels,
            label=self.label,
        )
        log.info(
            "stream %s: live output %s",
            self.label,
            f"with {self.audio_channels}-channel Opus audio"
            if self.audio_channels
            else "without audio",
        )
        early, self._early_audio = self._early_audio, deque()
        for message in early:
            self.audio(message)

    def _mux_video(self, packets: list[av.Packet]) -> list[MuxChunk]:
        assert self.muxer is not None
        chunks: list[MuxChunk] = []
        for packet in packets:
            if packet.pts is not None:
                chunks.extend(
                    self.muxer.write_video(
                        bytes(packet), packet.pts, packet.dts, packet.is_keyframe
                    )
                )
        return chunks

    def _mux_audio(self, packets: list[tuple[int, bytes]]) -> list[MuxChunk]:
        if not packets or self.muxer is None or self.audio_channels is None:
            return []
        chunks: list[MuxChunk] = []
        for pts, data in packets:
            if self._last_audio_pts is not None and pts <= self._last_audio_pts:
                # Overlapping input audio (an encoder restarted per segment re-primes): players
                # and FFmpeg reject timestamps that go back.
                self._count("audio_non_increasing_pts")
                continue
            self._last_audio_pts = pts
            chunks.extend(self.muxer.write_audio(data, pts))
        return chunks
