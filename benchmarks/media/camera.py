"""Input made the way cameras, OBS and go-livepeer's gateway make it, by FFmpeg's own encoders
and muxer (through PyAV), never by the runner's: standalone MPEG-TS segments (2 s by default)
that each open with PAT/PMT and a keyframe, H.264 High with B-frames (libx264) or HEVC
(libx265), AAC at 48 kHz, colour tagged in the stream (BT.709 or BT.601, limited or full range)
or untagged, any frame rate, or variable frame rate.

Pictures are the clip's counter pattern (``benchmarks.media.clip``), so every output picture can
be told apart, or flat colour patches (``colour_patches``) converted here with the tagged matrix's
own equations, so colour errors can be measured against known RGB values.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import cast

import av
import numpy as np
from av.audio.stream import AudioStream
from av.video.stream import VideoStream

from benchmarks.media.clip import ClipSpec, video_yuv420p
from egress.mux import crc32_mpeg2

TS_CLOCK = 90_000
TS_TIME_BASE = Fraction(1, TS_CLOCK)
AUDIO_RATE = 48_000
START_PTS = 2 * TS_CLOCK  # keeps B-frame dts positive, as real muxers do

# H.273 codes: (matrix, primaries, transfer); Kr, Kb of the matrix
COLOURS = {
    "bt709": ((1, 1, 1), (0.2126, 0.0722)),
    "bt601": ((6, 6, 6), (0.299, 0.114)),
}
PATCHES = (
    (200, 40, 40),
    (40, 180, 60),
    (50, 60, 200),
    (230, 200, 40),
    (128, 128, 128),
    (20, 160, 170),
)
"""RGB values of the flat patches, left to right."""


@dataclass(frozen=True)
class CameraSpec:
    """What the camera sends."""

    width: int = 1280
    height: int = 720
    fps: int = 30
    codec: str = "libx264"  # or "libx265"
    b_frames: int = 2
    segment_seconds: float = 2.0
    audio: bool = True
    video: bool = True
    colour: str | None = "bt709"  # "bt709", "bt601" or None (untagged)
    full_range: bool = False
    vfr: bool = False
    """Variable frame rate: the spacing cycles through 1, 1.5 and 0.5 frame intervals."""

    def pts(self, index: int) -> int:
        """Presentation time of frame ``index`` (90 kHz)."""
        step = TS_CLOCK / self.fps
        if not self.vfr:
            return START_PTS + round(index * step)
        cycle = (0.0, 1.0, 2.5, 3.0)  # spacings 1, 1.5, 0.5, then 1 again
        whole, part = divmod(index, 3)
        return START_PTS + round((whole * 3 + cycle[part]) * step)


def counter_picture(spec: CameraSpec) -> Callable[[int], np.ndarray]:
    """Frame ``index`` of the counter clip at the camera's size (limited-range yuv420p)."""
    clip = ClipSpec(width=spec.width, height=spec.height, fps=spec.fps)
    return lambda index: video_yuv420p(clip, index)


def yuv_of_rgb(rgb: np.ndarray, colour: str, full_range: bool) -> np.ndarray:
    """``(h, w, 3)`` RGB to packed yuv420p planes with the matrix's equations (chroma averaged
    over 2x2 blocks)."""
    kr, kb = COLOURS[colour][1]
    x = rgb.astype(np.float64) / 255
    y = kr * x[..., 0] + (1 - kr - kb) * x[..., 1] + kb * x[..., 2]
    pb = (x[..., 2] - y) / (2 * (1 - kb))
    pr = (x[..., 0] - y) / (2 * (1 - kr))
    offset, luma, chroma = (0, 255, 255) if full_range else (16, 219, 224)
    h, w = y.shape

    def pool(p: np.ndarray) -> np.ndarray:
        return p.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))

    planes = [
        np.round(offset + luma * y),
        np.round(128 + chroma * pool(pb)),
        np.round(128 + chroma * pool(pr)),
    ]
    flat = np.concatenate([p.reshape(-1) for p in planes]).clip(0, 255).astype(np.uint8)
    return flat.reshape(h * 3 // 2, w)


def rgb_of_yuv(planes: np.ndarray, matrix: int, full_range: bool) -> np.ndarray:
    """Packed yuv420p to ``(h, w, 3)`` float RGB (0-255) with an H.273 matrix (1 = BT.709,
    anything else BT.601): how a player shows a picture tagged that way."""
    kr, kb = COLOURS["bt709" if matrix == 1 else "bt601"][1]
    h, w = planes.shape[0] * 2 // 3, planes.shape[1]
    flat = planes.reshape(-1).astype(np.float64)
    y = flat[: h * w].reshape(h, w)
    u = flat[h * w : h * w + h * w // 4].reshape(h // 2, w // 2).repeat(2, 0).repeat(2, 1)
    v = flat[h * w + h * w // 4 :].reshape(h // 2, w // 2).repeat(2, 0).repeat(2, 1)
    offset, luma, chroma = (0, 255, 255) if full_range else (16, 219, 224)
    y = (y - offset) / luma
    pb, pr = (u - 128) / chroma, (v - 128) / chroma
    r = y + 2 * (1 - kr) * pr
    b = y + 2 * (1 - kb) * pb
    g = (y - kr * r - kb * b) / (1 - kr - kb)
    return np.stack([r, g, b], axis=-1) * 255


def colour_patches(spec: CameraSpec) -> Callable[[int], np.ndarray]:
    """Flat vertical bands of ``PATCHES``, converted with the camera's tagged matrix (BT.709 for
    HD and BT.601 below when untagged, as players assume)."""
    colour = spec.colour or ("bt709" if spec.height >= 720 else "bt601")
    rgb = np.zeros((spec.height, spec.width, 3), np.uint8)
    band = spec.width // len(PATCHES)
    for i, value in enumerate(PATCHES):
        rgb[:, i * band : (i + 1) * band] = value
    planes = yuv_of_rgb(rgb, colour, spec.full_range)
    return lambda index: planes


def patch_centres(width: int) -> list[int]:
    """x of the middle of each patch band."""
    band = width // len(PATCHES)
    return [i * band + band // 2 for i in range(len(PATCHES))]


class _Collect(io.RawIOBase):
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.parts.append(bytes(data))
        return len(data)


def camera_segments(
    spec: CameraSpec,
    frame_count: int,
    picture: Callable[[int], np.ndarray] | None = None,
) -> list[bytes]:
    """``frame_count`` frames as standalone MPEG-TS segments (bytes each).

    One continuous encode (as a camera or OBS streams), cut before every segment's keyframe the
    way a segmenter cuts a live stream; each cut gets the stream's PAT and PMT in front.
    """
    data = _continuous_ts(spec, frame_count, picture or counter_picture(spec))
    if spec.video:
        return split_at_keyframes(data)
    return _split_evenly(data, math.ceil(frame_count / (spec.segment_seconds * spec.fps)))


def split_at_keyframes(data: bytes) -> list[bytes]:
    """Cut a continuous MPEG-TS stream before each video keyframe (random access indicator)."""
    headers: list[bytes] = []
    pmt_pids: set[int] = set()
    video_pid: int | None = None
    parts: list[bytearray] = [bytearray()]
    seen_keyframe = False
    for i in range(0, len(data) - 187, 188):
        packet = data[i : i + 188]
        pid = ((packet[1] & 0x1F) << 8) | packet[2]
        if pid == 0 and not headers:
            headers.append(packet)
            pmt_pids.add(((packet[15] & 0x1F) << 8) | packet[16])
        elif pid in pmt_pids and len(headers) == 1:
            headers.append(packet)
            video_pid = _video_pid(packet)
        pusi = bool(packet[1] & 0x40)
        adaptation = bool(packet[3] & 0x20) and packet[4] > 0
        random_access = adaptation and bool(packet[5] & 0x40)
        if pid == video_pid and pusi and random_access and len(headers) == 2:
            if seen_keyframe:
                parts.append(bytearray(b"".join(headers)))
            seen_keyframe = True
        parts[-1] += packet
    return [bytes(p) for p in parts if p]


def _video_pid(pmt_packet: bytes) -> int | None:
    start = 5 + pmt_packet[4]
    length = ((pmt_packet[start + 1] & 0x0F) << 8) | pmt_packet[start + 2]
    end = start + 3 + length - 4
    j = start + 12 + (((pmt_packet[start + 10] & 0x0F) << 8) | pmt_packet[start + 11])
    while j + 5 <= end:
        if pmt_packet[j] in (0x1B, 0x24):
            return ((pmt_packet[j + 1] & 0x1F) << 8) | pmt_packet[j + 2]
        j += 5 + (((pmt_packet[j + 3] & 0x0F) << 8) | pmt_packet[j + 4])
    return None


def _split_evenly(data: bytes, count: int) -> list[bytes]:
    """Audio only (no keyframes to cut at): ``count`` parts of about equal size, each cut before
    a PES start, PAT and PMT first."""
    packets = len(data) // 188
    starts = [
        i
        for i in range(2, packets)
        if data[i * 188 + 1] & 0x40 and ((data[i * 188 + 1] & 0x1F) << 8 | data[i * 188 + 2]) > 0x20
    ]
    cuts = sorted(
        {min(starts, key=lambda i: abs(i - k * packets / count)) for k in range(1, count)}
    )
    bounds = [0, *cuts, packets]
    head = data[: 2 * 188]
    parts = [data[a * 188 : b * 188] for a, b in itertools.pairwise(bounds)]
    return [parts[0], *(head + p for p in parts[1:])]


def _video_stream(container: av.container.OutputContainer, spec: CameraSpec) -> VideoStream:
    gop = str(max(1, round(spec.segment_seconds * spec.fps)))
    if spec.codec == "libx265":
        params = f"keyint={gop}:min-keyint={gop}:scenecut=0:open-gop=0:bframes={spec.b_frames}"
        params += ":log-level=error"
        options = {"preset": "ultrafast", "x265-params": params}
    else:
        options = {
            "preset": "veryfast",
            "bf": str(spec.b_frames),
            "g": gop,
            "keyint_min": gop,
            "sc_threshold": "0",
        }
    video = cast(VideoStream, container.add_stream(spec.codec, rate=spec.fps, options=options))
    video.width, video.height = spec.width, spec.height
    video.pix_fmt = "yuv420p"
    video.time_base = TS_TIME_BASE
    ctx = video.codec_context
    ctx.time_base = TS_TIME_BASE
    if spec.codec != "libx265":
        ctx.max_b_frames = spec.b_frames
        ctx.profile = "High"
    if spec.colour is not None:
        (matrix, primaries, transfer), _ = COLOURS[spec.colour]
        ctx.colorspace, ctx.color_primaries, ctx.color_trc = matrix, primaries, transfer
        ctx.color_range = 2 if spec.full_range else 1
    return video


def _continuous_ts(
    spec: CameraSpec, frame_count: int, picture: Callable[[int], np.ndarray]
) -> bytes:
    sink = _Collect()
    container = av.open(sink, "w", format="mpegts")
    video = _video_stream(container, spec) if spec.video else None
    audio: AudioStream | None = None
    if spec.audio:
        audio = cast(AudioStream, container.add_stream("aac", rate=AUDIO_RATE))
        audio.layout = "stereo"
        audio.time_base = Fraction(1, AUDIO_RATE)
    per_segment = max(1, round(spec.segment_seconds * spec.fps))
    audio_next = 0
    for index in range(frame_count):
        if video is not None:
            frame = av.VideoFrame.from_ndarray(picture(index), format="yuv420p")
            frame.pts = spec.pts(index)
            frame.time_base = TS_TIME_BASE
            if spec.colour is not None:
                (matrix, primaries, transfer), _ = COLOURS[spec.colour]
                frame.colorspace = matrix
                frame.color_primaries = primaries
                frame.color_trc = transfer
                frame.color_range = 2 if spec.full_range else 1
            if index % per_segment == 0:
                frame.pict_type = av.video.frame.PictureType.I
            container.mux(video.encode(frame))
        if audio is not None:
            upto = _samples_at(spec, index + 1)
            while upto - audio_next >= 1024:
                container.mux(audio.encode(_tone(audio_next, 1024)))
                audio_next += 1024
    if video is not None:
        container.mux(video.encode(None))
    if audio is not None:
        container.mux(audio.encode(None))
    container.close()
    return b"".join(sink.parts)


def _samples_at(spec: CameraSpec, index: int) -> int:
    """Audio samples before frame ``index``, rounded down to whole AAC frames."""
    samples = (spec.pts(index) - START_PTS) * AUDIO_RATE // TS_CLOCK
    return samples - samples % 1024


def _tone(start: int, samples: int) -> av.AudioFrame:
    t = (np.arange(start, start + samples) / AUDIO_RATE).astype(np.float32)
    wave = (0.2 * np.sin(2 * math.pi * 440.0 * t)).astype(np.float32)
    frame = av.AudioFrame.from_ndarray(np.stack([wave, wave]), format="fltp", layout="stereo")
    frame.sample_rate = AUDIO_RATE
    frame.pts = start + START_PTS * AUDIO_RATE // TS_CLOCK
    frame.time_base = Fraction(1, AUDIO_RATE)
    return frame


def retype_stream(segment: bytes, old: int, new: int) -> bytes:
    """``segment`` with the PMT's ``old`` stream type replaced by ``new`` (CRC fixed)."""
    data = bytearray(segment)
    pat = next(i for i in range(0, len(data), 188) if data[i + 1] & 0x1F == 0 and data[i + 2] == 0)
    pmt_pid = ((data[pat + 15] & 0x1F) << 8) | data[pat + 16]
    for i in range(0, len(data), 188):
        if ((data[i + 1] & 0x1F) << 8 | data[i + 2]) != pmt_pid:
            continue
        start = i + 5 + data[i + 4]  # after the pointer field
        length = ((data[start + 1] & 0x0F) << 8) | data[start + 2]
        end = start + 3 + length - 4
        info = ((data[start + 10] & 0x0F) << 8) | data[start + 11]
        j = start + 12 + info
        while j < end:
            if data[j] == old:
                data[j] = new
            j += 5 + (((data[j + 3] & 0x0F) << 8) | data[j + 4])
        data[end : end + 4] = crc32_mpeg2(bytes(data[start:end])).to_bytes(4, "big")
    return bytes(data)
