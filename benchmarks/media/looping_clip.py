"""The counter clip encoded once and replayed in a loop, so that a sender costs no encode per frame.

``LoopingClip.encode`` runs FFmpeg's libx264 and muxer (``LiveTsEncoder``) over ``period`` clip
frames once and keeps, per frame, the MPEG-TS bytes the muxer wrote for it. ``chunks_for(i)``
then hands out frame ``i`` of an endless stream: the bytes of clip frame ``i % period`` with every
PTS, DTS and PCR moved on by whole loops, so timestamps keep rising across loop boundaries. A
loop holds whole segments and every segment is its own container (PAT/PMT, IDR first, continuity
counters from zero), so nothing else needs rewriting.

The counter drawn in clip frame ``j`` is ``j``: a reader unwraps it modulo ``period`` (not the
4096 the counter itself wraps at), see ``benchmarks.latency.figures.unwrap_counter``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from benchmarks.media.clip import COUNTER_MODULO, TS_CLOCK, ClipSpec, video_yuv420p
from benchmarks.media.live_ts import LiveTsEncoder, TsChunk

TS_PACKET = 188
_SYNC = 0x47
_MASK33 = (1 << 33) - 1
# Patch sites: (byte offset in the chunk, kind).
_PES_TIMESTAMP = 0  # 5-byte PTS or DTS field of a PES header
_PCR = 1  # 6-byte PCR of an adaptation field


def timestamp_sites(data: bytes) -> list[tuple[int, int]]:
    """Where the PTS, DTS and PCR fields sit in whole TS packets (``data`` is packet-aligned)."""
    sites: list[tuple[int, int]] = []
    for start in range(0, len(data) - TS_PACKET + 1, TS_PACKET):
        if data[start] != _SYNC:
            raise ValueError(f"lost TS sync at byte {start}")
        unit_start = data[start + 1] & 0x40
        control = (data[start + 3] >> 4) & 0x3
        payload = start + 4
        if control & 0x2:  # adaptation field
            length = data[payload]
            if length and data[payload + 1] & 0x10:  # PCR flag
                sites.append((payload + 2, _PCR))
            payload += 1 + length
        if not (control & 0x1) or not unit_start or payload + 14 > start + TS_PACKET:
            continue
        if data[payload : payload + 3] != b"\x00\x00\x01":
            continue  # a PSI section (PAT, PMT), not a PES
        flags = data[payload + 7] >> 6
        if flags & 0x2:
            sites.append((payload + 9, _PES_TIMESTAMP))
        if flags == 0x3:
            sites.append((payload + 14, _PES_TIMESTAMP))
    return sites


def _read_pes_timestamp(data: bytes | bytearray, at: int) -> int:
    b = data[at : at + 5]
    return ((b[0] >> 1) & 0x7) << 30 | b[1] << 22 | (b[2] >> 1) << 15 | b[3] << 7 | (b[4] >> 1)


def _write_pes_timestamp(out: bytearray, at: int, value: int) -> None:
    prefix = out[at] & 0xF0  # the '0010'/'0011'/'0001' marker nibble stays
    out[at] = prefix | ((value >> 29) & 0xE) | 1
    out[at + 1] = (value >> 22) & 0xFF
    out[at + 2] = ((value >> 14) & 0xFE) | 1
    out[at + 3] = (value >> 7) & 0xFF
    out[at + 4] = ((value << 1) & 0xFE) | 1


def _shift_pcr(out: bytearray, at: int, delta: int) -> None:
    b = out[at : at + 6]
    base = b[0] << 25 | b[1] << 17 | b[2] << 9 | b[3] << 1 | b[4] >> 7
    base = (base + delta) & _MASK33
    out[at] = (base >> 25) & 0xFF
    out[at + 1] = (base >> 17) & 0xFF
    out[at + 2] = (base >> 9) & 0xFF
    out[at + 3] = (base >> 1) & 0xFF
    out[at + 4] = ((base & 1) << 7) | (b[4] & 0x7F)  # reserved bits and the extension stay


def shift_timestamps(data: bytes, sites: list[tuple[int, int]], delta: int) -> bytes:
    """``data`` with every PTS/DTS/PCR at ``sites`` moved on by ``delta`` 90 kHz ticks."""
    if not delta or not sites:
        return data
    out = bytearray(data)
    for at, kind in sites:
        if kind == _PCR:
            _shift_pcr(out, at, delta)
        else:
            _write_pes_timestamp(out, at, (_read_pes_timestamp(out, at) + delta) & _MASK33)
    return bytes(out)


class _Stored(msgspec.Struct):
    width: int
    height: int
    fps: int
    segment_frames: int
    frames: list[list[tuple[bytes, bool, bool]]]
    closing: list[tuple[bytes, bool, bool]]


@dataclass
class _Chunk:
    data: bytes
    first: bool
    last: bool
    sites: list[tuple[int, int]] = field(default_factory=list)

    def shifted(self, delta: int) -> TsChunk:
        return TsChunk(0, shift_timestamps(self.data, self.sites, delta), self.first, self.last)


def _chunks(raw: list[tuple[bytes, bool, bool]]) -> list[_Chunk]:
    return [_Chunk(data, first, last, timestamp_sites(data)) for data, first, last in raw]


class LoopingClip:
    """``period`` frames of the counter clip, encoded once, replayed as an endless stream."""

    def __init__(
        self,
        spec: ClipSpec,
        segment_frames: int,
        frames: list[list[tuple[bytes, bool, bool]]],
        closing: list[tuple[bytes, bool, bool]],
    ) -> None:
        if not frames or len(frames) % segment_frames:
            raise ValueError("a loop holds whole segments")
        if len(frames) > COUNTER_MODULO:
            raise ValueError(f"a loop holds at most {COUNTER_MODULO} frames (the counter's range)")
        self.spec = spec
        self.segment_frames = segment_frames
        self.period = len(frames)
        self._raw = (frames, closing)
        self._frames = [_chunks(raw) for raw in frames]
        self._closing = _chunks(closing)
        # One loop in 90 kHz ticks; whole ticks because a loop is whole segments of whole frames.
        self.loop_ticks = (self.period * TS_CLOCK) // spec.fps

    @classmethod
    def encode(
        cls,
        spec: ClipSpec,
        frames: int,
        *,
        segment_seconds: float = 1.0,
        preset: str = "ultrafast",
    ) -> LoopingClip:
        """Encode the first ``frames`` clip frames (rounded up to whole segments)."""
        encoder = LiveTsEncoder(frame_rate=spec.fps, segment_seconds=segment_seconds, preset=preset)
        seg = encoder.segment_frames
        if (seg * TS_CLOCK) % spec.fps:
            raise ValueError("a segment must last a whole number of 90 kHz ticks")
        period = -(-max(1, frames) // seg) * seg
        out: list[list[tuple[bytes, bool, bool]]] = []
        for index in range(period):
            chunks = encoder.video(video_yuv420p(spec, index), spec.pts(index))
            out.append([(c.data, c.first, c.last) for c in chunks])
        closing = [(c.data, c.first, c.last) for c in encoder.close()]
        # The encoder closes a segment when the next one's first picture comes in; in a loop
        # the last segment's close comes with the next loop's first frame (see ``chunks_for``).
        return cls(spec, seg, out, closing)

    def chunks_for(self, index: int) -> list[TsChunk]:
        """Frame ``index`` of the endless stream, as the live encoder would have sent it."""
        loop, j = divmod(index, self.period)
        delta = loop * self.loop_ticks
        chunks = [c.shifted(delta) for c in self._frames[j]]
        if j == 0 and loop > 0:
            chunks = self.closing_after(index - 1) + chunks
        return chunks

    def closing_after(self, index: int) -> list[TsChunk]:
        """What ends the segment that holds frame ``index`` when it is the stream's last."""
        delta = (index // self.period) * self.loop_ticks
        if (index + 1) % self.segment_frames == 0 or index % self.period == self.period - 1:
            return [c.shifted(delta) for c in self._closing]
        # Mid-segment: the encoder's close drains and ends the open segment; a replay has no
        # encoder, and the bytes are complete already, so only the end mark is sent.
        return [TsChunk(0, b"", last=True)]

    def save(self, path: Path) -> None:
        """Write the clip to ``path`` (for another process to ``load``)."""
        frames, closing = self._raw
        stored = _Stored(
            self.spec.width, self.spec.height, self.spec.fps, self.segment_frames, frames, closing
        )
        path.write_bytes(msgspec.msgpack.encode(stored))

    @classmethod
    def load(cls, path: Path) -> LoopingClip:
        """Read a clip written by ``save``."""
        stored = msgspec.msgpack.decode(path.read_bytes(), type=_Stored)
        spec = ClipSpec(width=stored.width, height=stored.height, fps=stored.fps)
        return cls(spec, stored.segment_frames, stored.frames, stored.closing)
