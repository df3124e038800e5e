"""A synthetic test clip: the counter pictures of :mod:`byoc.smoke.pattern` (re-exported here),
a tone, and MPEG-TS made by FFmpeg.

The module also produces MPEG-TS segments with FFmpeg's own muxer (through PyAV), the way a
third-party source such as go-livepeer's RTMP ingest writes them: H.264 with the video PES length
left at zero, optional AAC or Opus audio. Tests and benchmarks use them as ingest input.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import cast

import av
import numpy as np
from av.audio.stream import AudioStream
from av.video.stream import VideoStream

from byoc.smoke.pattern import (
    COUNTER_BITS,
    COUNTER_MODULO,
    MAX_BLOCK,
    MIN_BLOCK,
    TS_CLOCK,
    TS_TIME_BASE,
    ClipSpec,
    counter_block_size,
    expected_counter,
    luma_plane,
    read_counter,
    read_frame_counter,
    video_frame,
    video_rgb24,
    video_yuv420p,
)

__all__ = [
    "COUNTER_BITS",
    "COUNTER_MODULO",
    "MAX_BLOCK",
    "MIN_BLOCK",
    "TS_CLOCK",
    "TS_TIME_BASE",
    "ClipSpec",
    "TsSegment",
    "audio_frame",
    "audio_tone",
    "counter_block_size",
    "expected_counter",
    "ffmpeg_ts_segments",
    "luma_plane",
    "read_counter",
    "read_frame_counter",
    "tone_phase_error",
    "video_frame",
    "video_rgb24",
    "video_yuv420p",
]


def audio_tone(spec: ClipSpec, start_sample: int, samples: int) -> np.ndarray:
    """A sine tone, planar float32 of shape ``(channels, samples)``, continuous across calls."""
    t = (np.arange(start_sample, start_sample + samples, dtype=np.float64)) / spec.audio_rate
    tone = (0.25 * np.sin(2.0 * math.pi * spec.tone_hz * t)).astype(np.float32)
    return np.repeat(tone[np.newaxis, :], spec.audio_channels, axis=0)


def audio_frame(spec: ClipSpec, start_sample: int, samples: int) -> av.AudioFrame:
    """Tone samples as an ``fltp`` ``av.AudioFrame``; pts in ``1/audio_rate`` units.

    The pts is aligned to the video: sample ``s`` plays at ``start_pts / 90000 + s / rate``.
    """
    layout = "mono" if spec.audio_channels == 1 else "stereo"
    frame = av.AudioFrame.from_ndarray(
        audio_tone(spec, start_sample, samples), format="fltp", layout=layout
    )
    frame.sample_rate = spec.audio_rate
    frame.time_base = Fraction(1, spec.audio_rate)
    frame.pts = (spec.start_pts * spec.audio_rate) // TS_CLOCK + start_sample
    return frame


def tone_phase_error(samples: np.ndarray, spec: ClipSpec, first_sample_time: float) -> float:
    """How far (in seconds, modulo one tone period) decoded tone samples sit from where the
    clip put them, given the presentation time of their first sample. Used to check A/V sync."""
    mono = samples.astype(np.float64)
    if mono.ndim == 2:
        mono = mono[0]
    n = np.arange(mono.size, dtype=np.float64)
    w = 2.0 * math.pi * spec.tone_hz / spec.audio_rate
    # Phase of the tone in the decoded samples via correlation with sin/cos.
    s = float(np.dot(mono, np.sin(w * n)))
    c = float(np.dot(mono, np.cos(w * n)))
    measured = math.atan2(c, s)  # tone = sin(w n + measured)
    expected_t = first_sample_time - spec.start_pts / TS_CLOCK
    expected = (2.0 * math.pi * spec.tone_hz * expected_t) % (2.0 * math.pi)
    diff = (measured - expected + math.pi) % (2.0 * math.pi) - math.pi
    return abs(diff) / (2.0 * math.pi * spec.tone_hz)


# --------------------------------------------------------------------------- FFmpeg-made input


@dataclass
class TsSegment:
    """One MPEG-TS segment written by FFmpeg's muxer.

    ``frame_chunks[i]`` holds the bytes the muxer had written once video frame
    ``first_frame + i`` was muxed (only meaningful for video-only segments without B-frames:
    there every frame's TS packets are complete in its own chunk); ``tail`` is what the
    muxer wrote on close. ``data`` is the whole segment.
    """

    first_frame: int
    frame_count: int
    frame_chunks: list[bytes] = field(default_factory=list)
    tail: bytes = b""

    @property
    def data(self) -> bytes:
        return b"".join(self.frame_chunks) + self.tail


class _Collect(io.RawIOBase):
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def ffmpeg_ts_segments(
    spec: ClipSpec,
    frame_count: int,
    *,
    segment_frames: int = 30,
    audio_codec: str | None = None,
    bframes: int = 0,
    video_pes_length: bool = False,
    pixel_format: str = "yuv420p",
    crf: int = 23,
) -> list[TsSegment]:
    """Encode ``frame_count`` clip frames into MPEG-TS segments with FFmpeg's muxer.

    Each segment is its own container and its own encoder run, so it opens with PAT/PMT and
    an IDR frame, like the files of FFmpeg's segment muxer. Timestamps continue across
    segments. ``audio_codec`` is ``None``, ``"aac"`` or ``"opus"``. ``video_pes_length=False``
    leaves the video PES length at zero (FFmpeg's default).
    """
    segments: list[TsSegment] = []
    for first in range(0, frame_count, segment_frames):
        count = min(segment_frames, frame_count - first)
        segments.append(
            _ffmpeg_segment(
                spec, first, count, audio_codec, bframes, video_pes_length, pixel_format, crf
            )
        )
    return segments


def _ffmpeg_segment(
    spec: ClipSpec,
    first: int,
    count: int,
    audio_codec: str | None,
    bframes: int,
    video_pes_length: bool,
    pixel_format: str,
    crf: int,
) -> TsSegment:
    sink = _Collect()
    options = {"flush_packets": "1"}
    if video_pes_length:
        options["omit_video_pes_length"] = "0"
    container = av.open(sink, "w", format="mpegts", options=options)
    video_options = {"preset": "ultrafast", "crf": str(crf), "bf": str(bframes)}
    if bframes == 0:
        video_options["tune"] = "zerolatency"
    video = cast(VideoStream, container.add_stream("libx264", rate=spec.fps, options=video_options))
    video.width, video.height = spec.width, spec.height
    video.pix_fmt = "yuv420p"
    video.time_base = TS_TIME_BASE
    video.codec_context.time_base = TS_TIME_BASE
    video.codec_context.gop_size = count + 1
    audio: AudioStream | None = None
    if audio_codec is not None:
        encoder_name = {"aac": "aac", "opus": "libopus"}[audio_codec]
        audio = cast(AudioStream, container.add_stream(encoder_name, rate=spec.audio_rate))
        audio.layout = "mono" if spec.audio_channels == 1 else "stereo"
        audio.time_base = Fraction(1, spec.audio_rate)
    segment = TsSegment(first_frame=first, frame_count=count)
    resampler = None
    audio_next = spec.samples_before(first)
    audio_end = spec.samples_before(first + count)
    for index in range(first, first + count):
        frame = video_frame(spec, index, pixel_format)
        if index == first:
            frame.pict_type = av.video.frame.PictureType.I
        container.mux(video.encode(frame))
        if audio is not None:
            if resampler is None:
                ctx = audio.codec_context
                resampler = av.AudioResampler(
                    format=ctx.format,
                    layout=ctx.layout,
                    rate=ctx.sample_rate,
                    frame_size=ctx.frame_size,
                )
            upto = spec.samples_before(index + 1)
            if upto > audio_next:
                for chunk in resampler.resample(audio_frame(spec, audio_next, upto - audio_next)):
                    container.mux(audio.encode(chunk))
                audio_next = upto
        segment.frame_chunks.append(sink.take())
    container.mux(video.encode(None))
    if audio is not None and resampler is not None:
        assert audio_next == audio_end
        for chunk in resampler.resample(None):
            container.mux(audio.encode(chunk))
        container.mux(audio.encode(None))
    container.close()
    segment.tail = sink.take()
    return segment
