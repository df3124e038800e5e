"""The complete-frame jitter buffer: packet by packet, then between two real aiortc peers over a
loopback socket, with packets dropped on the sender's transport (NACK recovery, PLI)."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import av
import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import (
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtpPacket,
    is_rtcp,
    unwrap_rtx,
)

from benchmarks.media.clip import ClipSpec, read_frame_counter, video_frame
from ingest.webrtc.jitter import CompleteFrameJitterBuffer, release_complete_frames
from tests.byoc.harness import wait_until
from tests.byoc.webrtc_clients import loopback_candidates

# -- packet by packet -------------------------------------------------------------------------


def rtp(seq: int, timestamp: int, *, marker: bool = False, data: bytes | None = None) -> RtpPacket:
    packet = RtpPacket(sequence_number=seq % 65536, timestamp=timestamp, marker=int(marker))
    packet._data = data if data is not None else f"{seq}.".encode()  # type: ignore[attr-defined]
    return packet


def frame_packets(first_seq: int, timestamp: int, count: int) -> list[RtpPacket]:
    return [rtp(first_seq + i, timestamp, marker=i == count - 1) for i in range(count)]


def test_a_frame_comes_out_with_its_marked_last_packet() -> None:
    buffer = CompleteFrameJitterBuffer()
    a, b = frame_packets(100, 3000, 3), frame_packets(103, 6000, 2)
    assert buffer.add(a[0]) == (False, None)
    assert buffer.add(a[1]) == (False, None)
    pli, frame = buffer.add(a[2])
    assert not pli and frame is not None
    assert (frame.timestamp, frame.data) == (3000, b"100.101.102.")
    assert buffer.add(b[0])[1] is None, "the released frame is not released again"
    frame = buffer.add(b[1])[1]
    assert frame is not None and frame.data == b"103.104."
    assert buffer.early_frames == 2


def test_aiortc_releases_the_same_frame_one_packet_later() -> None:
    """The baseline this buffer improves on: aiortc waits for the next frame's first packet."""
    plain = JitterBuffer(capacity=512, is_video=True)
    packets = frame_packets(100, 3000, 3) + frame_packets(103, 6000, 2)
    released = [plain.add(p)[1] for p in packets]
    assert [f is not None for f in released] == [False, False, False, True, False]
    assert released[3] is not None and released[3].data == b"100.101.102."


def test_out_of_order_packets_wait_for_the_gap_to_fill() -> None:
    buffer = CompleteFrameJitterBuffer()
    a = frame_packets(65534, 3000, 4)  # sequence numbers wrap inside the frame
    for packet in (a[0], a[2], a[3]):
        assert buffer.add(packet)[1] is None, "a gap: the frame is not complete"
    frame = buffer.add(a[1])[1]  # the reordered (or retransmitted) packet
    assert frame is not None and frame.data == b"65534.65535.65536.65537."
    late_duplicate = rtp(65535, 3000)
    assert buffer.add(late_duplicate) == (False, None), "a packet of a released frame is dropped"


def test_a_frame_without_its_first_packet_is_held_as_aiortc_holds_it() -> None:
    buffer = CompleteFrameJitterBuffer()
    a, b = frame_packets(10, 3000, 2), frame_packets(12, 6000, 2)
    buffer.add(a[0])
    assert buffer.add(a[1])[1] is not None
    # b's first packet is lost: b is not released although its marker came
    assert buffer.add(b[1])[1] is None
    frame = buffer.add(b[0])[1]  # until the retransmission fills the gap
    assert frame is not None and frame.data == b"12.13."


def test_a_frame_whose_marker_was_lost_goes_when_the_next_frame_starts() -> None:
    buffer = CompleteFrameJitterBuffer()
    a = [rtp(20, 3000), rtp(21, 3000)]  # a sender that never sets the marker bit
    buffer.add(a[0])
    assert buffer.add(a[1])[1] is None
    frame = buffer.add(rtp(22, 6000))[1]
    assert frame is not None and frame.data == b"20.21."
    assert buffer.early_frames == 0


def test_padding_after_a_released_frame_does_not_hold_the_next_one() -> None:
    buffer = CompleteFrameJitterBuffer()
    for packet in frame_packets(30, 3000, 2):
        buffer.add(packet)
    assert buffer.add(rtp(32, 3000, data=b""))[1] is None  # bandwidth-probe padding
    frame = buffer.add(rtp(33, 6000, marker=True))[1]
    assert frame is not None and (frame.timestamp, frame.data) == (6000, b"33.")


def test_a_jump_far_ahead_resets_and_asks_for_a_keyframe() -> None:
    buffer = CompleteFrameJitterBuffer(capacity=16)
    buffer.add(rtp(1, 3000))  # its frame never completes
    pli, frame = buffer.add(rtp(40, 9000, marker=True))
    assert pli, "an overflow asks for a keyframe, as aiortc's buffer does"
    assert frame is not None and frame.data == b"40."


# -- two real aiortc peers ----------------------------------------------------------------------

SPEC = ClipSpec(width=320, height=240, fps=30, audio_channels=1)
FRAMES = 120


class CounterTrack(MediaStreamTrack):
    """``frames`` counter pictures at 30 fps, then the end of the track."""

    kind = "video"

    def __init__(self, frames: int) -> None:
        super().__init__()
        self.frames = frames
        self.sent = 0
        self.start: float | None = None

    async def recv(self) -> av.VideoFrame:  # type: ignore[override]
        self.start = self.start or time.monotonic()
        if self.sent >= self.frames:
            self.stop()
            raise MediaStreamError
        wait = self.start + self.sent / SPEC.fps - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        frame = video_frame(SPEC, self.sent)
        frame.pts, frame.time_base = self.sent * 3000, fractions.Fraction(1, 90_000)
        self.sent += 1
        return frame


@dataclass
class LossyLink:
    """Drops chosen RTP packets on the sender's transport and records the RTCP feedback the
    sender gets back."""

    drop: Callable[[RtpPacket], bool]
    dropped: list[int] = field(default_factory=list)
    nacked: set[int] = field(default_factory=set)
    plis: int = 0


@dataclass
class Call:
    received: list[int | None]
    buffer: JitterBuffer | None
    link: LossyLink


def install_loss(sender: RTCRtpSender, link: LossyLink) -> None:
    transport = sender.transport
    send_rtp: Callable[[bytes], Awaitable[None]] = transport._send_rtp

    async def lossy_send_rtp(data: bytes) -> None:
        if not is_rtcp(data):
            packet = RtpPacket.parse(data)
            if packet.payload_type == sender._RTCRtpSender__rtx_payload_type:  # type: ignore[attr-defined]
                packet = unwrap_rtx(packet, payload_type=0, ssrc=0)
            if link.drop(packet):
                link.dropped.append(packet.sequence_number)
                return
        await send_rtp(data)

    transport._send_rtp = lossy_send_rtp  # type: ignore[method-assign]
    handle = sender._handle_rtcp_packet

    async def watch_feedback(packet: object) -> None:
        if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            link.nacked.update(packet.lost)
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_PLI:
            link.plis += 1
        await handle(packet)  # type: ignore[arg-type]

    sender._handle_rtcp_packet = watch_feedback  # type: ignore[method-assign]


@contextlib.asynccontextmanager
async def call(*, early: bool, link: LossyLink, frames: int = FRAMES) -> AsyncIterator[Call]:
    """A publisher sending ``frames`` H.264 counter pictures to a receiver; yields once media
    flows, with the counters the receiver decodes so far."""
    with loopback_candidates():
        publisher, receiver = RTCPeerConnection(), RTCPeerConnection()
        tasks: list[asyncio.Task[None]] = []
        try:
            transceiver = publisher.addTransceiver(CounterTrack(frames), direction="sendonly")
            caps = RTCRtpSender.getCapabilities("video")
            assert caps is not None
            transceiver.setCodecPreferences(
                [c for c in caps.codecs if c.mimeType in ("video/H264", "video/rtx")]
            )
            state = Call([], None, link)

            async def drain(track: MediaStreamTrack) -> None:
                with contextlib.suppress(MediaStreamError):
                    while True:
                        frame = await track.recv()
                        assert isinstance(frame, av.VideoFrame)
                        state.received.append(read_frame_counter(frame))

            receiver.on("track", lambda track: tasks.append(asyncio.create_task(drain(track))))
            await publisher.setLocalDescription(await publisher.createOffer())
            await receiver.setRemoteDescription(publisher.localDescription)
            (incoming,) = receiver.getTransceivers()
            if early:
                assert release_complete_frames(incoming.receiver, "test")
            state.buffer = incoming.receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]
            await receiver.setLocalDescription(await receiver.createAnswer())
            answer = receiver.localDescription
            await publisher.setRemoteDescription(RTCSessionDescription(answer.sdp, answer.type))
            install_loss(transceiver.sender, link)
            yield state
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await publisher.close()
            await receiver.close()


def assert_in_order_without_repeats(counters: list[int | None]) -> list[int]:
    read = [c for c in counters if c is not None]
    assert len(read) == len(counters), "every decoded picture is whole (its counter reads)"
    assert read == sorted(read) and len(set(read)) == len(read), "in order, none twice"
    assert all(0 <= c < FRAMES for c in read), "no frame that was never sent"
    return read


@pytest.mark.parametrize("early", [True, False], ids=["complete-frames", "aiortc"])
async def test_every_frame_arrives_in_order_when_nothing_is_lost(early: bool) -> None:
    async with call(early=early, link=LossyLink(lambda _p: False)) as state:
        await wait_until(lambda: len(state.received) >= FRAMES - 1, timeout=60)
        read = assert_in_order_without_repeats(state.received)
        assert len(read) >= FRAMES - 1  # aiortc's buffer keeps the last frame until another starts
        assert isinstance(state.buffer, CompleteFrameJitterBuffer) is early
        if isinstance(state.buffer, CompleteFrameJitterBuffer):
            assert state.buffer.early_frames >= FRAMES - 1, "each frame left on its marker"


async def test_dropped_packets_are_nacked_and_retransmitted_frames_complete() -> None:
    originals: set[int] = set()
    first_timestamp: list[int] = []

    def drop_every_25th_once(packet: RtpPacket) -> bool:
        first_timestamp[:] = first_timestamp or [packet.timestamp]
        frame = (packet.timestamp - first_timestamp[0]) % 2**32 // 3000
        # Not the stream's first packet (a receiver NACKs gaps after what it has seen) nor in
        # the last frames (no later packet would reveal the gap).
        if (
            0 < frame < FRAMES - 10
            and packet.sequence_number % 25 == 0
            and packet.sequence_number not in originals
        ):
            originals.add(packet.sequence_number)  # the retransmission gets through
            return True
        return False

    async with call(early=True, link=LossyLink(drop_every_25th_once)) as state:
        await wait_until(lambda: len(state.received) >= FRAMES - 1, timeout=60)
        assert state.link.dropped, "packets were lost on the way"
        await wait_until(lambda: set(state.link.dropped) <= state.link.nacked, timeout=30)
        read = assert_in_order_without_repeats(state.received)
        assert len(read) >= FRAMES - 1, "retransmissions completed every frame"


async def test_a_packet_lost_for_good_ends_in_a_pli_and_the_stream_recovers() -> None:
    lost: list[int] = []
    seen: set[int] = set()

    def lose_one_for_good(packet: RtpPacket) -> bool:
        seen.add(packet.sequence_number)
        if not lost and len(seen) > 40 and not packet.marker:
            lost.append(packet.sequence_number)  # mid-stream, inside a frame
        return packet.sequence_number in lost  # its retransmissions too

    async with call(early=True, link=LossyLink(lose_one_for_good), frames=100_000) as state:
        await wait_until(lambda: state.link.plis > 0, timeout=60)
        assert lost[0] in state.link.nacked, "the loss was NACKed first"
        # Frames decoded against the lost one show stale pictures (the decoder conceals) until
        # the keyframe the PLI asked for: then counters beyond any seen before run in order.
        reached = max(c for c in state.received if c is not None)

        def recovered() -> bool:
            tail = state.received[-10:]
            return all(c is not None and c > reached for c in tail) and tail == sorted(
                set(tail)  # type: ignore[type-var]
            )

        await wait_until(recovered, timeout=60)
