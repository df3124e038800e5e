"""Segmenting MPEG-TS muxer: encoded H.264 and Opus packets in, trickle segments out.

Every call returns the TS bytes of the packet it was given at once, so a trickle subscriber
downstream receives each frame as soon as it is encoded, not at the end of the segment.

This is our own muxer rather than FFmpeg's: with an audio and a video stream, FFmpeg's
interleaving queue (``av_interleaved_write_frame``, the only write PyAV exposes) holds each video
packet until a later packet of the other stream or the next video packet arrives, i.e. one frame
interval late, whatever ``max_delay``/``flush_packets`` say. Writing the few TS structures a
live stream needs ourselves avoids that and gives us the exact layout we want:

* each segment opens with PAT and PMT and an IDR access unit (SPS/PPS included by x264), so it
  decodes on its own; continuity counters run on across segments, as in one long stream;
* one access unit per PES, with the PES length set whenever it fits in 16 bits, so demuxers
  (FFmpeg's and ours) can release a frame without waiting for the next one; an access unit
  delimiter is added when the encoder did not write one (H.222.0 requires it);
* PCR on the video PID at every frame (equal to its DTS, as FFmpeg does with ``muxdelay=0``),
  random_access_indicator on keyframes;
* Opus as go-livepeer and FFmpeg expect it: stream type 0x06 with an ``Opus`` registration
  descriptor and a channel-count extension descriptor, stream id 0xBD, each packet behind the
  Opus-in-TS control header.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

log = logging.getLogger(__name__)

TS_PACKET_SIZE = 188
TS_CLOCK = 90_000
PMT_PID = 0x1000
VIDEO_PID = 0x100
AUDIO_PID = 0x101
PROGRAM_NUMBER = 1
STREAM_ID_VIDEO = 0xE0
STREAM_ID_PRIVATE_1 = 0xBD
STREAM_TYPE_H264 = 0x1B
STREAM_TYPE_PRIVATE_PES = 0x06
_MASK33 = (1 << 33) - 1
_AUD = b"\x00\x00\x00\x01\x09\xf0"
_MAX_HELD_AUDIO = 100  # Opus packets kept until the first video keyframe (2 s at 20 ms)


def _crc32_mpeg2_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else (crc << 1)
        table.append(crc & 0xFFFFFFFF)
    return table


_CRC_TABLE = _crc32_mpeg2_table()


def crc32_mpeg2(data: bytes) -> int:
    """CRC-32/MPEG-2 of a PSI section (no reflection, initial value 0xFFFFFFFF)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[((crc >> 24) ^ byte) & 0xFF]
    return crc


def _with_crc(section: bytes) -> bytes:
    return section + crc32_mpeg2(section).to_bytes(4, "big")


def pat_section() -> bytes:
    """Program association table naming one program whose PMT is on ``PMT_PID``."""
    # transport_stream_id 1, version 0, current, section 0 of 0, then program -> PMT PID
    body = bytes([0x00, 0x01, 0xC1, 0x00, 0x00]) + bytes(
        [PROGRAM_NUMBER >> 8, PROGRAM_NUMBER & 0xFF, 0xE0 | (PMT_PID >> 8), PMT_PID & 0xFF]
    )
    return _with_crc(bytes([0x00, 0xB0, len(body) + 4]) + body)


def pmt_section(audio_channels: int | None) -> bytes:
    """Program map table: H.264 video, plus Opus audio when ``audio_channels`` is given."""
    streams = bytes([STREAM_TYPE_H264, 0xE0 | (VIDEO_PID >> 8), VIDEO_PID & 0xFF, 0xF0, 0x00])
    if audio_channels is not None:
        descriptors = b"\x05\x04Opus" + bytes([0x7F, 0x02, 0x80, audio_channels])
        streams += bytes(
            [
                STREAM_TYPE_PRIVATE_PES,
                0xE0 | (AUDIO_PID >> 8),
                AUDIO_PID & 0xFF,
                0xF0,
                len(descriptors),
            ]
        )
        streams += descriptors
    body = (
        bytes([PROGRAM_NUMBER >> 8, PROGRAM_NUMBER & 0xFF, 0xC1, 0x00, 0x00])
        + bytes([0xE0 | (VIDEO_PID >> 8), VIDEO_PID & 0xFF, 0xF0, 0x00])  # PCR PID, no info
        + streams
    )
    return _with_crc(bytes([0x02, 0xB0 | ((len(body) + 4) >> 8), (len(body) + 4) & 0xFF]) + body)


def _timestamp(marker: int, value: int) -> bytes:
    value &= _MASK33
    return bytes(
        [
            (marker << 4) | ((value >> 29) & 0x0E) | 1,
            (value >> 22) & 0xFF,
            ((value >> 14) & 0xFE) | 1,
            (value >> 7) & 0xFF,
            ((value << 1) & 0xFE) | 1,
        ]
    )


def pes_packet(
    stream_id: int, payload: bytes, pts: int, dts: int | None, *, aligned: bool = True
) -> bytes:
    """A PES packet; its length field is set unless the packet is too long for 16 bits."""
    if dts is not None and dts != pts:
        header = b"\xc0\x0a" + _timestamp(0x3, pts) + _timestamp(0x1, dts)
    else:
        header = b"\x80\x05" + _timestamp(0x2, pts)
    flags = b"\x84" if aligned else b"\x80"
    length = 1 + len(header) + len(payload)
    if length > 0xFFFF:
        length = 0
    return (
        b"\x00\x00\x01"
        + bytes([stream_id])
        + length.to_bytes(2, "big")
        + flags
        + header
        + (payload)
    )


def _pcr_field(base: int) -> bytes:
    base &= _MASK33
    return bytes(
        [
            (base >> 25) & 0xFF,
            (base >> 17) & 0xFF,
            (base >> 9) & 0xFF,
            (base >> 1) & 0xFF,
            ((base & 1) << 7) | 0x7E,
            0x00,
        ]
    )


def opus_ts_payload(packet: bytes) -> bytes:
    """An Opus packet behind its Opus-in-TS control header (no trims, no extension)."""
    size = len(packet)
    return b"\x7f\xe0" + b"\xff" * (size // 255) + bytes([size % 255]) + packet


def h264_with_aud(access_unit: bytes) -> bytes:
    """Prefix an access unit delimiter unless the access unit starts with one."""
    if access_unit[:5] == b"\x00\x00\x00\x01\x09" or access_unit[:4] == b"\x00\x00\x01\x09":
        return access_unit
    return _AUD + access_unit


class TsPacketizer:
    """Splits PES packets and PSI sections into 188-byte TS packets, per-PID counters."""

    def __init__(self) -> None:
        self._cc: dict[int, int] = {}

    def _next_cc(self, pid: int) -> int:
        cc = self._cc.get(pid, -1)
        cc = (cc + 1) & 0x0F
        self._cc[pid] = cc
        return cc

    def section(self, pid: int, section: bytes) -> bytes:
        """One PSI section (it must fit one TS packet), stuffed with 0xFF."""
        payload = b"\x00" + section  # pointer_field
        if len(payload) > TS_PACKET_SIZE - 4:
            raise ValueError("PSI section too long for one TS packet")
        header = bytes([0x47, 0x40 | (pid >> 8), pid & 0xFF, 0x10 | self._next_cc(pid)])
        return header + payload + b"\xff" * (TS_PACKET_SIZE - 4 - len(payload))

    def pes(
        self, pid: int, pes: bytes, *, pcr: int | None = None, random_access: bool = False
    ) -> bytes:
        """TS packets carrying one PES; the first may carry a PCR and random_access_indicator;
        the last is padded with adaptation-field stuffing."""
        first_body = b""
        if pcr is not None or random_access:
            flags = (0x40 if random_access else 0) | (0x10 if pcr is not None else 0)
            first_body = bytes([flags]) + (_pcr_field(pcr) if pcr is not None else b"")
        out = bytearray()
        pos, size, first = 0, len(pes), True
        while pos < size:
            body = first_body if first else b""
            room = 184 - (1 + len(body) if body else 0)
            remaining = size - pos
            if remaining >= room:
                chunk = room
                adaptation = bytes([len(body)]) + body if body else b""
            else:
                chunk = remaining
                af_size = 184 - chunk  # adaptation field bytes, its length byte included
                if af_size == 1:
                    adaptation = b"\x00"
                else:
                    body = body or b"\x00"
                    adaptation = bytes([af_size - 1]) + body + b"\xff" * (af_size - 1 - len(body))
            control = 0x30 if adaptation else 0x10
            out += bytes(
                [
                    0x47,
                    (0x40 if first else 0) | (pid >> 8),
                    pid & 0xFF,
                    control | self._next_cc(pid),
                ]
            )
            out += adaptation
            out += pes[pos : pos + chunk]
            pos += chunk
            first = False
        return bytes(out)


@dataclass(frozen=True, slots=True)
class MuxChunk:
    """Bytes for segment ``segment``.

    ``first``: this chunk opens the segment (starts with PAT/PMT and a keyframe) — begin a new
    trickle segment. ``last``: the segment is complete after this chunk — close it. ``data``
    may be empty on a ``last`` chunk.
    """

    segment: int
    data: bytes
    first: bool = False
    last: bool = False


@dataclass
class MuxStats:
    """What the muxer wrote and dropped."""

    segments: int = 0
    video_packets: int = 0
    audio_packets: int = 0
    bytes: int = 0
    video_dropped_before_keyframe: int = 0
    audio_dropped_before_video: int = 0
    long_video_pes: int = 0  # PES over 64 KiB, written with length 0


class SegmentMuxer:
    """Cuts encoded packets into self-contained MPEG-TS segments of ``segment_seconds``.

    A segment starts at the first video keyframe whose pts is ``segment_seconds`` or more past
    the current segment's start (or earlier than it: a timestamp jump). Ask ``segment_due``
    before encoding a frame to know whether to force a keyframe. All timestamps are 90 kHz.
    """

    def __init__(
        self,
        *,
        segment_seconds: float = 1.0,
        audio_channels: int | None = None,
        label: str = "",
    ) -> None:
        if segment_seconds <= 0:
            raise ValueError("segment_seconds must be positive")
        if audio_channels is not None and audio_channels not in (1, 2):
            raise ValueError("audio_channels must be 1 or 2")
        self.segment_ticks = round(segment_seconds * TS_CLOCK)
        self.audio_channels = audio_channels
        self.label = label
        self.stats = MuxStats()
        self.segment = -1  # index of the open segment; -1 before the first
        self._open = False
        self._segment_start = 0
        self._packetizer = TsPacketizer()
        self._pat = pat_section()
        self._pmt = pmt_section(audio_channels)
        self._held_audio: deque[tuple[bytes, int]] = deque()

    def segment_due(self, pts: int) -> bool:
        """Whether a keyframe at ``pts`` would open a new segment."""
        if not self._open:
            return True
        elapsed = pts - self._segment_start
        return elapsed >= self.segment_ticks or elapsed < 0

    def write_video(
        self, access_unit: bytes, pts: int, dts: int | None = None, keyframe: bool = False
    ) -> list[MuxChunk]:
        """Mux one H.264 access unit (Annex B); returns its bytes at once."""
        chunks: list[MuxChunk] = []
        if keyframe and self.segment_due(pts):
            chunks.extend(self._end_segment())
            self.segment += 1
            self._open = True
            self._segment_start = pts
            self.stats.segments += 1
            head = self._packetizer.section(0, self._pat) + self._packetizer.section(
                PMT_PID, self._pmt
            )
            data = head + self._video_ts(access_unit, pts, dts, keyframe)
            while self._held_audio:
                packet, audio_pts = self._held_audio.popleft()
                data += self._audio_ts(packet, audio_pts)
            chunks.append(self._chunk(data, first=True))
            return chunks
        if not self._open:
            self.stats.video_dropped_before_keyframe += 1
            return chunks
        chunks.append(self._chunk(self._video_ts(access_unit, pts, dts, keyframe)))
        return chunks

    def write_audio(self, packet: bytes, pts: int) -> list[MuxChunk]:
        """Mux one Opus packet. Before the first video keyframe, packets are held (2 s at most)
        and written right after it."""
        if self.audio_channels is None:
            raise RuntimeError("muxer was created without an audio stream")
        if not self._open:
            if len(self._held_audio) >= _MAX_HELD_AUDIO:
                self._held_audio.popleft()
                self.stats.audio_dropped_before_video += 1
            self._held_audio.append((packet, pts))
            return []
        return [self._chunk(self._audio_ts(packet, pts))]

    def close(self) -> list[MuxChunk]:
        """End the open segment, if any."""
        return self._end_segment()

    def _end_segment(self) -> list[MuxChunk]:
        if not self._open:
            return []
        self._open = False
        return [MuxChunk(self.segment, b"", last=True)]

    def _chunk(self, data: bytes, *, first: bool = False) -> MuxChunk:
        self.stats.bytes += len(data)
        return MuxChunk(self.segment, data, first=first)

    def _video_ts(self, access_unit: bytes, pts: int, dts: int | None, keyframe: bool) -> bytes:
        self.stats.video_packets += 1
        pes = pes_packet(STREAM_ID_VIDEO, h264_with_aud(access_unit), pts, dts)
        if pes[4] == 0 and pes[5] == 0:
            self.stats.long_video_pes += 1
        pcr = dts if dts is not None else pts
        return self._packetizer.pes(VIDEO_PID, pes, pcr=pcr, random_access=keyframe)

    def _audio_ts(self, packet: bytes, pts: int) -> bytes:
        self.stats.audio_packets += 1
        pes = pes_packet(STREAM_ID_PRIVATE_1, opus_ts_payload(packet), pts, None)
        return self._packetizer.pes(AUDIO_PID, pes)
