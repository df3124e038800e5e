"""A synthetic test clip: a moving pattern with a frame counter that survives lossy coding.

Every frame carries its index (modulo 4096) as 12 bits drawn in large blocks along the top edge:
row one holds the bits (white = 1), row two holds the same bits inverted. A reader samples the
middle of each block in both rows; a bit is only trusted when the two rows disagree clearly, so a
smeared or wrong frame reads as ``None`` instead of a wrong number. Below the counter the frame
moves (a scrolling gradient, a bouncing square and drifting colour) so the encoder has real work.

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

COUNTER_BITS = 12
COUNTER_MODULO = 1 << COUNTER_BITS
MAX_BLOCK = 40
MIN_BLOCK = 8
TS_CLOCK = 90_000
TS_TIME_BASE = Fraction(1, TS_CLOCK)

# Limited-range luma for the counter blocks (what an encoder expects for yuv420p).
_LUMA_ON = 235
_LUMA_OFF = 16
# Minimum difference between a bit block and its inverted twin for the bit to be trusted.
_MIN_CONTRAST = 48


@dataclass(frozen=True)
class ClipSpec:
    """Geometry and timing of a generated clip."""

    width: int = 512
    height: int = 512
    fps: int = 30
    audio_rate: int = 48_000
    audio_channels: int = 1
    tone_hz: float = 440.0
    start_pts: int = TS_CLOCK  # pts of frame 0 in 90 kHz ticks; >0 keeps codec priming positive

    def __post_init__(self) -> None:
        if self.width % 2 or self.height % 2:
            raise ValueError("width and height must be even (yuv420p)")
        if counter_block_size(self.width) < MIN_BLOCK or self.height < 4 * MIN_BLOCK:
            raise ValueError(f"{self.width}x{self.height} is too small for the counter")

    def pts(self, index: int) -> int:
        """Presentation time of frame ``index`` in 90 kHz ticks."""
        return self.start_pts + (index * TS_CLOCK) // self.fps

    def samples_before(self, index: int) -> int:
        """Audio samples (per channel) that precede frame ``index``."""
        return (index * self.audio_rate) // self.fps


def counter_block_size(width: int) -> int:
    """Side of one counter block for a frame of ``width`` pixels."""
    return min(MAX_BLOCK, width // COUNTER_BITS)


class _Patterns:
    """Per-geometry constants, computed once per spec."""

    def __init__(self, spec: ClipSpec) -> None:
        h, w = spec.height, spec.width
        yy, xx = np.mgrid[0:h, 0:w]
        self.luma_base = ((xx + 2 * yy) & 0xFF).astype(np.uint8)
        cy, cx = np.mgrid[0 : h // 2, 0 : w // 2]
        self.u_base = (cx & 0x7F).astype(np.uint8)
        self.v_base = (cy & 0x7F).astype(np.uint8)
        self.block = counter_block_size(w)
        self.rgb_base = np.stack(
            [self.luma_base, self.luma_base[:, ::-1], np.flipud(self.luma_base)], axis=-1
        )


_patterns: dict[ClipSpec, _Patterns] = {}


def _patterns_for(spec: ClipSpec) -> _Patterns:
    found = _patterns.get(spec)
    if found is None:
        found = _patterns[spec] = _Patterns(spec)
    return found


def _square_origin(spec: ClipSpec, index: int, side: int) -> tuple[int, int]:
    top = 2 * counter_block_size(spec.width) + 4
    span_x = max(1, spec.width - side)
    span_y = max(1, spec.height - side - top)
    x = (index * 7) % (2 * span_x)
    y = (index * 5) % (2 * span_y)
    return top + (y if y < span_y else 2 * span_y - y), x if x < span_x else 2 * span_x - x


def _counter_bits(index: int) -> list[bool]:
    value = index % COUNTER_MODULO
    return [bool(value >> (COUNTER_BITS - 1 - bit) & 1) for bit in range(COUNTER_BITS)]


def video_yuv420p(spec: ClipSpec, index: int) -> np.ndarray:
    """Frame ``index`` as packed yuv420p planes, shape ``(height * 3 // 2, width)``."""
    p = _patterns_for(spec)
    h, w, b = spec.height, spec.width, p.block
    out = np.empty((h * 3 // 2, w), dtype=np.uint8)
    luma = out[:h]
    np.add(p.luma_base, np.uint8((3 * index) & 0xFF), out=luma, casting="unsafe")
    side = max(16, w // 8)
    y0, x0 = _square_origin(spec, index, side)
    luma[y0 : y0 + side, x0 : x0 + side] = 220
    for bit, on in enumerate(_counter_bits(index)):
        x = bit * b
        luma[0:b, x : x + b] = _LUMA_ON if on else _LUMA_OFF
        luma[b : 2 * b, x : x + b] = _LUMA_OFF if on else _LUMA_ON
    chroma = out[h:].reshape(2, h // 2, w // 2)
    np.add(p.u_base, np.uint8(64 + index % 64), out=chroma[0], casting="unsafe")
    np.add(p.v_base, np.uint8(64 + (index * 3) % 64), out=chroma[1], casting="unsafe")
    band_w = (COUNTER_BITS * b) // 2
    chroma[:, 0:b, 0:band_w] = 128
    return out


def video_rgb24(spec: ClipSpec, index: int) -> np.ndarray:
    """Frame ``index`` as an rgb24 array, shape ``(height, width, 3)``."""
    p = _patterns_for(spec)
    b = p.block
    out = np.add(p.rgb_base, np.uint8((3 * index) & 0xFF), casting="unsafe", dtype=np.uint8)
    side = max(16, spec.width // 8)
    y0, x0 = _square_origin(spec, index, side)
    out[y0 : y0 + side, x0 : x0 + side] = (250, 200, 40)
    for bit, on in enumerate(_counter_bits(index)):
        x = bit * b
        out[0:b, x : x + b] = 255 if on else 0
        out[b : 2 * b, x : x + b] = 0 if on else 255
    return out


def video_frame(spec: ClipSpec, index: int, pixel_format: str = "yuv420p") -> av.VideoFrame:
    """Frame ``index`` as an ``av.VideoFrame`` with its pts in the 90 kHz time base."""
    if pixel_format == "yuv420p":
        frame = av.VideoFrame.from_ndarray(video_yuv420p(spec, index), format="yuv420p")
    elif pixel_format == "rgb24":
        frame = av.VideoFrame.from_ndarray(video_rgb24(spec, index), format="rgb24")
    else:
        raise ValueError(f"unsupported pixel format {pixel_format!r}")
    frame.pts = spec.pts(index)
    frame.time_base = TS_TIME_BASE
    return frame


def luma_plane(pixels: np.ndarray, pixel_format: str, height: int | None = None) -> np.ndarray:
    """The luma (or grey) plane of a decoded picture held as a numpy array.

    ``pixel_format`` is ``"gray"`` (2-D luma), ``"yuv420p"`` (packed planes of shape
    ``(h * 3 // 2, w)``, or pass ``height``) or ``"rgb24"`` (``(h, w, 3)``).
    """
    if pixel_format == "gray":
        return pixels
    if pixel_format == "yuv420p":
        rows = height if height is not None else pixels.shape[0] * 2 // 3
        return pixels[:rows]
    if pixel_format == "rgb24":
        # Counter blocks are grey, so the green channel alone is a good luma stand-in.
        return pixels[:, :, 1]
    raise ValueError(f"unsupported pixel format {pixel_format!r}")


def read_counter(pixels: np.ndarray, pixel_format: str = "gray") -> int | None:
    """Read the frame counter back from decoded pixels; ``None`` when it is not readable."""
    luma = luma_plane(pixels, pixel_format)
    b = counter_block_size(luma.shape[1])
    if b < MIN_BLOCK or luma.shape[0] < 2 * b:
        return None
    lo, hi = b // 4, b - b // 4
    value = 0
    for bit in range(COUNTER_BITS):
        x = bit * b
        top = float(luma[lo:hi, x + lo : x + hi].mean())
        check = float(luma[b + lo : b + hi, x + lo : x + hi].mean())
        if abs(top - check) < _MIN_CONTRAST:
            return None
        value = (value << 1) | int(top > check)
    return value


def read_frame_counter(frame: av.VideoFrame) -> int | None:
    """Read the counter from an ``av.VideoFrame`` of any pixel format."""
    if frame.format.name in ("yuv420p", "yuvj420p", "nv12", "gray"):
        luma = np.frombuffer(memoryview(frame.planes[0]), dtype=np.uint8)
        stride = frame.planes[0].line_size
        luma = luma.reshape(-1, stride)[: frame.height, : frame.width]
        return read_counter(luma, "gray")
    return read_counter(frame.to_ndarray(format="rgb24"), "rgb24")


def expected_counter(index: int) -> int:
    """The counter value drawn into frame ``index``."""
    return index % COUNTER_MODULO


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
