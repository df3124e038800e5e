"""A generated test picture with a frame counter that survives lossy coding.

Every frame carries its index (modulo 4096) as 12 bits drawn in large blocks along the top edge:
row one holds the bits (white = 1), row two holds the same bits inverted. A reader samples the
middle of each block in both rows; a bit is only trusted when the two rows disagree clearly, so a
smeared or wrong frame reads as ``None`` instead of a wrong number. Below the counter the frame
moves (a scrolling gradient, a bouncing square and drifting colour) so the encoder has real work.

``comfystream-byoc smoke`` publishes these pictures and reads the counter back from what a runner
returns, which is how it matches output frames to input frames for glass-to-glass latency. The
benchmarks and tests use the same pictures.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

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
    # The middle of every block of both rows at once (integer sums: a frame's read is cheap).
    band = luma[: 2 * b, : COUNTER_BITS * b].reshape(2, b, COUNTER_BITS * b)
    columns = band[:, lo:hi].sum(axis=1, dtype=np.int64).reshape(2, COUNTER_BITS, b)
    means = columns[:, :, lo:hi].sum(axis=2) / float((hi - lo) * (hi - lo))
    top, check = means[0], means[1]
    if bool((np.abs(top - check) < _MIN_CONTRAST).any()):
        return None
    value = 0
    for bit in (top > check).tolist():
        value = (value << 1) | int(bit)
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
