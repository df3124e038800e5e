"""Incremental MPEG-TS demuxer for live trickle input.

Bytes go in as they arrive (any chunking); elementary-stream packets (one PES each) come out as
soon as they are known to be complete:

* when the PES length declared in its header has been reached;
* when the next PES of the same PID starts (payload_unit_start_indicator);
* when the caller says the input went idle (``flush_pending``) while the demuxer sits on a
  188-byte boundary. Muxers leave the video PES length at zero, and FFmpeg's demuxer therefore
  holds every video frame until the next one starts; flushing on idle releases it at once. This
  relies on the muxer writing one access unit per PES, which FFmpeg and our egress muxer do.

Only what a live video + AAC/Opus stream needs is parsed: PAT, PMT (stream types 0x1B H.264,
0x24 HEVC, 0x0F AAC ADTS, 0x06 with an ``Opus`` registration descriptor), PES headers with
PTS/DTS. PCR is ignored. Other stream types are skipped and listed in ``program`` (what the last
PMT announced), with a warning the first time each is seen. Continuity-counter gaps drop the damaged PES and are counted; a segment that ends in
the middle of a PES (``new_segment``) drops that PES and counts it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

TS_PACKET_SIZE = 188
SYNC_BYTE = 0x47
PAT_PID = 0x0000
NULL_PID = 0x1FFF
TS_CLOCK = 90_000

STREAM_TYPE_H264 = 0x1B
STREAM_TYPE_HEVC = 0x24
STREAM_TYPE_AAC_ADTS = 0x0F
STREAM_TYPE_PRIVATE_PES = 0x06
DESCRIPTOR_REGISTRATION = 0x05
DESCRIPTOR_EXTENSION = 0x7F
OPUS_EXTENSION_TAG = 0x80

_H264_IDR = 5
_H264_NON_IDR = 1
_HEVC_IRAP = range(16, 24)  # BLA, IDR, CRA and reserved IRAP types
_HEVC_VCL = range(0, 32)

SUPPORTED_VIDEO = {STREAM_TYPE_H264: "h264", STREAM_TYPE_HEVC: "hevc"}
"""Video stream types the demuxer carries, and the decoder each needs."""
SUPPORTED_DESCRIPTION = "H.264 (stream type 0x1b) or HEVC (0x24) video, AAC or Opus audio"


@dataclass(frozen=True, slots=True)
class ElementaryStream:
    """One audio or video stream announced in the PMT."""

    pid: int
    stream_type: int
    codec: str  # "h264", "hevc", "aac" or "opus"
    kind: str  # "video" or "audio"
    channels: int | None = None  # Opus channel count from its extension descriptor


@dataclass(slots=True)
class EsPacket:
    """One complete PES payload: a video access unit or a run of audio frames.

    ``pts``/``dts`` are 90 kHz values, as carried in the stream (33-bit, ``None`` if absent)
    until a :class:`~ingest.decode.Timeline` maps them; ``source_pts`` keeps the carried value.
    ``received_ns`` is ``time.monotonic_ns()`` when the last byte of the packet was parsed.
    """

    stream: ElementaryStream
    data: bytes
    pts: int | None
    dts: int | None
    keyframe: bool
    received_ns: int
    segment: int
    flushed_early: bool = False  # completed by flush_pending() rather than by the stream itself
    source_pts: int | None = None
    discontinuity: bool = False  # set by a timeline: first packet after a timestamp jump
    after_loss: bool = False  # a PES of this stream was dropped just before this one


@dataclass
class DemuxStats:
    """Counters of what the demuxer saw and dropped."""

    ts_packets: int = 0
    bytes_skipped: int = 0  # bytes discarded to find the 0x47 sync again
    cc_errors: int = 0  # continuity counter jumps (lost TS packets)
    transport_errors: int = 0  # packets flagged with transport_error_indicator
    pes_packets: int = 0  # complete PES handed out
    pes_flushed_early: int = 0  # of which completed by flush_pending()
    pes_truncated: int = 0  # dropped: segment ended or next PES began before the declared end
    pes_damaged: int = 0  # dropped: TS packets of it were lost (CC gap, error flag)
    video_dropped: int = 0  # truncated or damaged PES of the video stream
    late_continuations: int = 0  # payload for a PES that flush_pending() already released
    orphan_packets: int = 0  # payload with no PES start seen (joined mid-PES)
    segments: int = 0


@dataclass(slots=True)
class _PendingPes:
    stream: ElementaryStream
    segment: int
    random_access: bool
    data: bytearray = field(default_factory=bytearray)
    declared: int = -1  # total PES size (header included) when the header carried a length
    damaged: bool = False


def _descriptors(data: bytes | memoryview) -> dict[int, bytes]:
    """Descriptor loop to a ``{tag: body}`` dict (first of each tag)."""
    out: dict[int, bytes] = {}
    i = 0
    while i + 2 <= len(data):
        tag, length = data[i], data[i + 1]
        body = bytes(data[i + 2 : i + 2 + length])
        out.setdefault(tag, body)
        i += 2 + length
    return out


def _read_timestamp(b: bytes | bytearray | memoryview, i: int) -> int:
    return (
        ((b[i] >> 1) & 0x07) << 30
        | b[i + 1] << 22
        | (b[i + 2] >> 1) << 15
        | b[i + 3] << 7
        | b[i + 4] >> 1
    )


def _pop(items: set[int], item: int) -> bool:
    if item in items:
        items.discard(item)
        return True
    return False


def hevc_is_irap(data: bytes | bytearray) -> bool:
    """True when the first coded slice of an Annex B HEVC access unit is an IRAP picture."""
    i = 0
    end = len(data) - 3
    for _ in range(64):
        i = data.find(b"\x00\x00\x01", i, end)
        if i < 0:
            return False
        nal_type = (data[i + 3] >> 1) & 0x3F
        if nal_type in _HEVC_IRAP:
            return True
        if nal_type in _HEVC_VCL:
            return False
        i += 3
    return False


def is_keyframe(codec: str, data: bytes | bytearray) -> bool:
    """Whether a video access unit starts a picture that needs no earlier one."""
    return hevc_is_irap(data) if codec == "hevc" else h264_is_idr(data)


def h264_is_idr(data: bytes | bytearray) -> bool:
    """True when the first coded slice of an Annex B access unit is an IDR slice."""
    i = 0
    end = len(data) - 3
    for _ in range(64):
        i = data.find(b"\x00\x00\x01", i, end)
        if i < 0:
            return False
        nal_type = data[i + 3] & 0x1F
        if nal_type == _H264_IDR:
            return True
        if nal_type == _H264_NON_IDR:
            return False
        i += 3
    return False


class TsDemuxer:
    """Turns a live MPEG-TS byte stream into elementary-stream packets; see the module doc."""

    def __init__(self, *, label: str = "") -> None:
        self.label = label
        self.stats = DemuxStats()
        self.streams: dict[int, ElementaryStream] = {}
        self.video: ElementaryStream | None = None
        self.audio: ElementaryStream | None = None
        self.program: list[str] | None = None
        """What the last PMT announced, one description per stream (None: no PMT yet)."""
        self._warned_types: set[int] = set()
        self._segment = 0
        self._segment_bytes = 0  # bytes fed since the segment began
        self._tail = b""  # bytes of an incomplete TS packet
        self._pmt_pids: set[int] = set()
        self._sections: dict[int, bytearray] = {}
        self._cc: dict[int, int] = {}
        self._pending: dict[int, _PendingPes] = {}
        self._released_early: set[int] = set()
        self._lost: set[int] = set()  # PIDs whose next packet follows a dropped PES

    @property
    def segment(self) -> int:
        """Index of the input segment being read (incremented by ``new_segment``)."""
        return self._segment

    # ------------------------------------------------------------------ public API

    def feed(self, data: bytes | bytearray | memoryview) -> list[EsPacket]:
        """Parse more input; returns the packets it completed."""
        out: list[EsPacket] = []
        self._segment_bytes += len(data)
        if self._tail:
            buf = self._tail + bytes(data)
            self._tail = b""
        else:
            buf = bytes(data)
        size = len(buf)
        i = 0
        while i + TS_PACKET_SIZE <= size:
            if buf[i] != SYNC_BYTE:
                j = self._resync(buf, i)
                self.stats.bytes_skipped += j - i
                i = j
                continue
            self._packet(buf, i, out)
            i += TS_PACKET_SIZE
        if i < size:
            self._tail = buf[i:]
        return out

    def flush_pending(self) -> list[EsPacket]:
        """The input has no more bytes for now: release PES packets without a declared length.

        Does nothing unless the input stopped on a TS packet boundary (otherwise the rest of a
        TS packet, and so possibly of the PES, is still on its way).
        """
        if self._tail:
            return []
        out: list[EsPacket] = []
        idle = [p for p, pes in self._pending.items() if pes.declared < 0 and len(pes.data) >= 9]
        for pid in idle:
            pes = self._pending.pop(pid)
            packet = self._finish(pes, early=True)
            if packet is not None:
                out.append(packet)
                self._released_early.add(pid)
        return out

    def new_segment(self) -> list[EsPacket]:
        """The current input segment ended; the next bytes start a new one.

        A PES cut short by the segment end (declared length not reached, or a partial TS
        packet left over) is dropped and counted; an open PES without a declared length is
        complete now and is returned. Continuity counters restart. Does nothing while no byte
        arrived since the last boundary, so it may be called at the start of every segment.
        """
        if not self._segment_bytes:
            return []
        self._segment_bytes = 0
        out: list[EsPacket] = []
        truncated_pid = None
        if self._tail:
            if len(self._tail) >= 3 and self._tail[0] == SYNC_BYTE:
                truncated_pid = ((self._tail[1] & 0x1F) << 8) | self._tail[2]
            self.stats.bytes_skipped += len(self._tail)
            self._tail = b""
        for pid, pes in self._pending.items():
            if pid == truncated_pid or pes.declared >= 0:
                self._drop(pes, truncated=True)
                log.debug("%s: dropped PES cut by segment end (pid %d)", self.label, pid)
                continue
            packet = self._finish(pes, early=False)
            if packet is not None:
                out.append(packet)
        self._pending.clear()
        self._released_early.clear()
        self._cc.clear()
        self._sections.clear()
        self._segment += 1
        self.stats.segments += 1
        return out

    def flush(self) -> list[EsPacket]:
        """End of input: release whatever is complete."""
        return self.new_segment()

    # ------------------------------------------------------------------ TS layer

    @staticmethod
    def _resync(buf: bytes, start: int) -> int:
        i = start + 1
        size = len(buf)
        while True:
            i = buf.find(b"\x47", i)
            if i < 0:
                return max(start + 1, size - TS_PACKET_SIZE + 1)
            nxt = i + TS_PACKET_SIZE
            if nxt >= size or buf[nxt] == SYNC_BYTE:
                return i
            i += 1

    def _packet(self, buf: bytes, i: int, out: list[EsPacket]) -> None:
        self.stats.ts_packets += 1
        b1 = buf[i + 1]
        pid = ((b1 & 0x1F) << 8) | buf[i + 2]
        if pid == NULL_PID:
            return
        b3 = buf[i + 3]
        afc = (b3 >> 4) & 3
        start = i + 4
        discontinuity = random_access = False
        if afc & 2:
            alen = buf[start]
            if alen:
                flags = buf[start + 1]
                discontinuity = bool(flags & 0x80)
                random_access = bool(flags & 0x40)
            start += 1 + alen
        if not afc & 1 or start >= i + TS_PACKET_SIZE:
            return  # no payload; the continuity counter does not advance
        stream = self.streams.get(pid)
        if stream is None and pid != PAT_PID and pid not in self._pmt_pids:
            return
        if b1 & 0x80:
            self.stats.transport_errors += 1
            self._damage(pid)
            return
        cc = b3 & 0x0F
        last = self._cc.get(pid)
        self._cc[pid] = cc
        lost = False
        if last is not None and not discontinuity:
            if cc == last:
                return  # duplicate packet, allowed once by the standard
            if cc != (last + 1) & 0x0F:
                self.stats.cc_errors += 1
                lost = True
        pusi = bool(b1 & 0x40)
        payload = buf[start : i + TS_PACKET_SIZE]
        if stream is not None:
            self._pes_payload(stream, pusi, lost, random_access, payload, out)
        else:
            self._section_payload(pid, pusi, lost, payload)

    def _damage(self, pid: int) -> None:
        pes = self._pending.get(pid)
        if pes is not None:
            pes.damaged = True

    # ------------------------------------------------------------------ PES layer

    def _pes_payload(
        self,
        stream: ElementaryStream,
        pusi: bool,
        lost: bool,
        random_access: bool,
        payload: bytes,
        out: list[EsPacket],
    ) -> None:
        pid = stream.pid
        if pusi:
            self._released_early.discard(pid)
            previous = self._pending.pop(pid, None)
            if previous is not None:
                if lost:
                    # The packets we lost were the tail of the previous PES.
                    previous.damaged = True
                if previous.declared >= 0:
                    self._drop(previous, truncated=True)
                else:
                    packet = self._finish(previous, early=False)
                    if packet is not None:
                        out.append(packet)
            pes = _PendingPes(stream, self._segment, random_access)
            pes.data += payload
            if len(payload) >= 6:
                length = (payload[4] << 8) | payload[5]
                if length:
                    pes.declared = 6 + length
            self._pending[pid] = pes
        else:
            found = self._pending.get(pid)
            if found is None:
                if pid in self._released_early:
                    self.stats.late_continuations += 1
                else:
                    self.stats.orphan_packets += 1
                return
            pes = found
            if lost:
                pes.damaged = True
            pes.data += payload
            if pes.declared < 0 and len(pes.data) >= 6 and len(pes.data) - len(payload) < 6:
                length = (pes.data[4] << 8) | pes.data[5]
                if length:
                    pes.declared = 6 + length
        if pes.declared >= 0 and len(pes.data) >= pes.declared:
            del self._pending[pid]
            del pes.data[pes.declared :]
            packet = self._finish(pes, early=False)
            if packet is not None:
                out.append(packet)

    def _drop(self, pes: _PendingPes, *, truncated: bool) -> None:
        if truncated:
            self.stats.pes_truncated += 1
        else:
            self.stats.pes_damaged += 1
        if pes.stream.kind == "video":
            self.stats.video_dropped += 1
        self._lost.add(pes.stream.pid)

    def _finish(self, pes: _PendingPes, *, early: bool) -> EsPacket | None:
        data = pes.data
        if pes.damaged or len(data) < 9 or data[0] != 0 or data[1] != 0 or data[2] != 1:
            self._drop(pes, truncated=False)
            return None
        flags = data[7]
        header_end = 9 + data[8]
        if header_end > len(data):
            self._drop(pes, truncated=True)
            return None
        pts = dts = None
        if flags & 0x80 and data[8] >= 5:
            pts = _read_timestamp(data, 9)
            dts = pts
            if flags & 0x40 and data[8] >= 10:
                dts = _read_timestamp(data, 14)
        payload = bytes(data[header_end:])
        stream = pes.stream
        if stream.kind == "video":
            keyframe = pes.random_access or is_keyframe(stream.codec, payload)
        else:
            keyframe = True
        self.stats.pes_packets += 1
        if early:
            self.stats.pes_flushed_early += 1
        return EsPacket(
            stream=stream,
            data=payload,
            pts=pts,
            dts=dts,
            keyframe=keyframe,
            received_ns=time.monotonic_ns(),
            segment=pes.segment,
            flushed_early=early,
            source_pts=pts,
            after_loss=_pop(self._lost, stream.pid),
        )

    # ------------------------------------------------------------------ PSI layer

    def _section_payload(self, pid: int, pusi: bool, lost: bool, payload: bytes) -> None:
        if pusi:
            pointer = payload[0]
            section = bytearray(payload[1 + pointer :])
        else:
            existing = self._sections.get(pid)
            if existing is None or lost:
                self._sections.pop(pid, None)
                return
            section = existing + payload
        if len(section) < 3:
            self._sections[pid] = section
            return
        total = 3 + (((section[1] & 0x0F) << 8) | section[2])
        if len(section) < total:
            self._sections[pid] = section
            return
        self._sections.pop(pid, None)
        body = memoryview(bytes(section[:total]))
        if pid == PAT_PID:
            self._parse_pat(body)
        else:
            self._parse_pmt(body)

    def _parse_pat(self, section: memoryview) -> None:
        if section[0] != 0x00 or len(section) < 12:
            return
        pmt_pids: set[int] = set()
        end = len(section) - 4  # CRC32
        for i in range(8, end - 3, 4):
            program = (section[i] << 8) | section[i + 1]
            pid = ((section[i + 2] & 0x1F) << 8) | section[i + 3]
            if program != 0:
                pmt_pids.add(pid)
                break  # the first program is the one we play
        if pmt_pids and pmt_pids != self._pmt_pids:
            self._pmt_pids = pmt_pids

    def _parse_pmt(self, section: memoryview) -> None:
        if section[0] != 0x02 or len(section) < 16:
            return
        program_info_length = ((section[10] & 0x0F) << 8) | section[11]
        i = 12 + program_info_length
        end = len(section) - 4
        streams: dict[int, ElementaryStream] = {}
        video = audio = None
        program: list[str] = []
        while i + 5 <= end:
            stream_type = section[i]
            pid = ((section[i + 1] & 0x1F) << 8) | section[i + 2]
            info_length = ((section[i + 3] & 0x0F) << 8) | section[i + 4]
            descriptors = _descriptors(section[i + 5 : i + 5 + info_length])
            i += 5 + info_length
            stream = self._classify(pid, stream_type, descriptors)
            if stream is None:
                program.append(f"unsupported stream type {stream_type:#04x} (pid {pid})")
                if stream_type not in self._warned_types:
                    self._warned_types.add(stream_type)
                    log.warning(
                        "%s: input stream type %#04x (pid %d) is not supported; skipped",
                        self.label,
                        stream_type,
                        pid,
                    )
                continue
            program.append(f"{stream.codec} {stream.kind}")
            if stream.kind == "video" and video is None:
                video = stream
                streams[pid] = stream
            elif stream.kind == "audio" and audio is None:
                audio = stream
                streams[pid] = stream
        self.program = program
        if streams != self.streams:
            for pid in list(self._pending):
                if pid not in streams or streams[pid] != self.streams.get(pid):
                    del self._pending[pid]
            log.debug("%s: program streams %s", self.label, list(streams.values()))
            self.streams = streams
            self.video, self.audio = video, audio

    @staticmethod
    def _classify(
        pid: int, stream_type: int, descriptors: dict[int, bytes]
    ) -> ElementaryStream | None:
        video_codec = SUPPORTED_VIDEO.get(stream_type)
        if video_codec is not None:
            return ElementaryStream(pid, stream_type, video_codec, "video")
        if stream_type == STREAM_TYPE_AAC_ADTS:
            return ElementaryStream(pid, stream_type, "aac", "audio")
        if stream_type == STREAM_TYPE_PRIVATE_PES:
            if descriptors.get(DESCRIPTOR_REGISTRATION, b"")[:4] == b"Opus":
                channels = None
                ext = descriptors.get(DESCRIPTOR_EXTENSION, b"")
                if len(ext) >= 2 and ext[0] == OPUS_EXTENSION_TAG and 1 <= ext[1] <= 8:
                    channels = ext[1]
                return ElementaryStream(pid, stream_type, "opus", "audio", channels)
        return None
