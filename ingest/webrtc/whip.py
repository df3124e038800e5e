"""A WHIP publisher's peer connection, decoded into the stream's input ring.

The parent answers the WHIP ``POST``; this worker holds the peer connection: ``answer`` takes the
offer (sent as a ``PeerOffer`` right after the stream's ``StreamStart``) and returns the SDP
answer with every candidate gathered (WHIP servers cannot trickle). Video may be H.264
(packetization-mode 1) or VP8, audio Opus. With ``early_frames`` a video frame goes to the
decoder as soon as its last packet is in, not when the next frame starts (``ingest.webrtc.jitter``).

Nothing between the network and the ring queues without bound: each track is drained as fast as
frames come; when the ring writer falls behind, the newest decoded frame wins and the skipped
ones are counted (``late_frame``). Audio is re-encoded to Opus packets (``StreamAudio``) on the
same timeline as the video: RTP timestamps are unwrapped, and the tracks' RTCP sender reports
put audio where the video sampled at the same instant lands (``AvTimeline``).

The stream ends ``completed`` when the peer goes away: its connection fails or closes, its
tracks end, or it sends no media for ``idle_timeout_s`` (a peer that vanished without a
``DELETE``; ICE consent expiry is the slower backstop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, cast

import av
from aiortc import (
    MediaStreamTrack,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RtcpSrPacket
from aiortc.sdp import candidate_from_sdp

from byoc.livepeer.webrtc.codecs import order_codecs
from byoc.livepeer.webrtc.ice import rtc_configuration
from byoc.livepeer.webrtc.sdp import SdpError, parse_fragment
from ingest.ring_sink import RingSink
from ingest.webrtc.audio import OpusPackets
from ingest.webrtc.clock import AvTimeline, SenderClock
from ingest.webrtc.jitter import release_complete_frames
from ipc.messages import DropReason, PeerAnswer, PeerCandidates, PeerOffer, StreamPartState

log = logging.getLogger(__name__)

VIDEO_CODECS = ("video/H264", "video/VP8")
AUDIO_CODECS = ("audio/opus",)
OFFER_WAIT_S = 30.0
MAX_AUDIO_BACKLOG = 25  # decoded audio frames (0.5 s) before the oldest are dropped


def watch_sender_reports(receiver: RTCRtpReceiver, clock: SenderClock) -> None:
    """Feed the RTCP sender reports ``receiver`` gets to ``clock`` (aiortc keeps them, and the
    RTP timestamp origin it subtracts from frame timestamps, to itself)."""
    handle = receiver._handle_rtcp_packet
    mapper = getattr(receiver, "_RTCRtpReceiver__timestamp_mapper", None)
    clock.rtp_origin = lambda: getattr(mapper, "_origin", None)

    async def handle_rtcp_packet(packet: Any) -> None:
        if isinstance(packet, RtcpSrPacket):
            clock.on_report(packet.sender_info.ntp_timestamp, packet.sender_info.rtp_timestamp)
        await handle(packet)

    receiver._handle_rtcp_packet = handle_rtcp_packet  # type: ignore[method-assign]


class WhipSource:
    """One WHIP publisher (see the module docstring)."""

    def __init__(
        self,
        stream_id: str,
        *,
        idle_timeout_s: float = 10.0,
        audio: bool = True,
        early_frames: bool = True,
    ):
        self.stream_id = stream_id
        self.early_frames = early_frames
        self.idle_timeout_s = idle_timeout_s
        self.audio = audio
        self.pc: RTCPeerConnection | None = None
        self.peer_id = ""
        self.drops: dict[DropReason, int] = {}
        self.video_frames = 0
        self.audio_frames = 0
        self.timeline = AvTimeline()
        self._sink: RingSink | None = None
        self._pending: list[MediaStreamTrack] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._answered = asyncio.Event()
        self._gone = asyncio.Event()
        self._gone_reason = ""
        self._last_media = time.monotonic()

    def counters(self) -> dict[DropReason, int]:
        return dict(self.drops)

    def _count(self, reason: DropReason, n: int = 1) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + n

    # -- signalling -------------------------------------------------------------------------

    async def answer(self, offer: PeerOffer) -> PeerAnswer:
        """Take the publisher's offer; answer 201 with the SDP answer, or 400/422/409."""

        def reply(status: int, sdp: str = "", error: str = "") -> PeerAnswer:
            return PeerAnswer(
                stream_id=self.stream_id,
                peer_id=offer.peer_id,
                request_id=offer.request_id,
                status=status,
                sdp=sdp,
                error=error,
            )

        if self.pc is not None:
            return reply(409, error="this session already has a publisher")
        pc = RTCPeerConnection(rtc_configuration(offer.ice_servers))
        self.pc, self.peer_id = pc, offer.peer_id
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", lambda: self._on_connection_state(pc))
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
            for transceiver in pc.getTransceivers():
                reports = (
                    self.timeline.video_reports
                    if transceiver.kind == "video"
                    else self.timeline.audio_reports
                )
                watch_sender_reports(transceiver.receiver, reports)
                if transceiver.kind == "video":
                    order_codecs(transceiver, VIDEO_CODECS)
                    if self.early_frames:
                        release_complete_frames(transceiver.receiver, self.stream_id)
                elif transceiver.kind == "audio":
                    order_codecs(transceiver, AUDIO_CODECS)
                transceiver.direction = "recvonly"
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # aiortc raises ValueError, KeyError, ... for bad offers
            log.info("stream %s: WHIP offer rejected: %r", self.stream_id, exc)
            self.pc = None
            await pc.close()
            return reply(400, error=f"the offer cannot be answered: {exc}")
        self._last_media = time.monotonic()
        self._answered.set()
        log.info("stream %s: WHIP publisher %s answered", self.stream_id, offer.peer_id)
        return reply(201, sdp=pc.localDescription.sdp)

    async def add_candidates(self, message: PeerCandidates) -> PeerAnswer:
        """Late candidates from a PATCH: 204, or 400 for a bad fragment."""

        def reply(status: int, error: str = "") -> PeerAnswer:
            return PeerAnswer(
                stream_id=self.stream_id,
                peer_id=message.peer_id,
                request_id=message.request_id,
                status=status,
                error=error,
            )

        if self.pc is None or message.peer_id != self.peer_id:
            return reply(404, "no such peer")
        try:
            fragment = parse_fragment(message.sdpfrag)
        except SdpError as exc:
            return reply(exc.status, str(exc))
        for line in fragment.candidates:
            try:
                candidate = candidate_from_sdp(line.split(":", 1)[1])
            except (ValueError, IndexError):
                log.info("stream %s: unusable candidate skipped: %r", self.stream_id, line)
                continue  # RFC 8840: skip what cannot be used, keep the rest
            candidate.sdpMLineIndex = 0  # max-bundle: the first m-line carries the transport
            try:
                await self.pc.addIceCandidate(candidate)
            except Exception as exc:
                log.info("stream %s: candidate ignored: %r", self.stream_id, exc)
        return reply(204)

    def _on_connection_state(self, pc: RTCPeerConnection) -> None:
        state = pc.connectionState
        log.info("stream %s: WHIP peer connection %s", self.stream_id, state)
        if state in ("failed", "closed"):
            self._end(f"peer connection {state}")

    def _end(self, reason: str) -> None:
        if not self._gone.is_set():
            self._gone_reason = reason
            self._gone.set()

    # -- media ------------------------------------------------------------------------------

    def _on_track(self, track: MediaStreamTrack) -> None:
        if self._sink is None:
            self._pending.append(track)
        else:
            self._start_track(track, self._sink)

    def _start_track(self, track: MediaStreamTrack, sink: RingSink) -> None:
        drain = self._drain_video if track.kind == "video" else self._drain_audio
        self._tasks.append(
            asyncio.create_task(drain(track, sink), name=f"whip-{track.kind}-{self.stream_id}")
        )

    async def run(self, sink: RingSink) -> StreamPartState:
        """Run until the publisher goes away; returns ``"completed"``."""
        self._sink = sink
        for track in self._pending:
            self._start_track(track, sink)
        self._pending.clear()
        try:
            try:
                await asyncio.wait_for(self._answered.wait(), OFFER_WAIT_S)
            except asyncio.TimeoutError:
                raise RuntimeError(f"no WHIP offer within {OFFER_WAIT_S:.0f}s") from None
            check = max(0.05, min(1.0, self.idle_timeout_s / 4))
            while not self._gone.is_set():
                idle = time.monotonic() - self._last_media
                if idle >= self.idle_timeout_s:
                    self._end(f"no media for {self.idle_timeout_s:g}s")
                    break
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._gone.wait(), check)
            log.info("stream %s: WHIP publisher gone (%s)", self.stream_id, self._gone_reason)
            return "completed"
        finally:
            await self.close()

    async def close(self) -> None:
        """Close the peer connection and stop draining (idempotent)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        pc, self.pc = self.pc, None
        if pc is not None:
            await pc.close()

    async def _drain_video(self, track: MediaStreamTrack, sink: RingSink) -> None:
        queue: asyncio.Queue[Any] | None = getattr(track, "_queue", None)  # aiortc's own queue
        try:
            while True:
                frame = await track.recv()
                assert isinstance(frame, av.VideoFrame)
                received = time.monotonic_ns()
                self._last_media = time.monotonic()
                # Newest wins: what piled up while the ring write ran is skipped, not queued.
                while queue is not None and not queue.empty():
                    newer = queue.get_nowait()
                    if newer is None:
                        raise MediaStreamError
                    self._count("late_frame")
                    frame = cast(av.VideoFrame, newer)
                self.video_frames += 1
                await sink.video(
                    frame,
                    pts=self.timeline.video_pts(frame.pts or 0, received),
                    keyframe=bool(frame.key_frame),
                    received_ns=received,
                    decoded_ns=received,
                )
        except MediaStreamError:
            self._end("video track ended")

    async def _drain_audio(self, track: MediaStreamTrack, sink: RingSink) -> None:
        queue: asyncio.Queue[Any] | None = getattr(track, "_queue", None)
        encoder: OpusPackets | None = None
        try:
            while True:
                frame = await track.recv()
                assert isinstance(frame, av.AudioFrame)
                self._last_media = time.monotonic()
                while queue is not None and queue.qsize() > MAX_AUDIO_BACKLOG:
                    if queue.get_nowait() is None:
                        raise MediaStreamError
                    self._count("audio_late")
                self.audio_frames += 1
                pts = self.timeline.audio_pts(frame.pts or 0)
                if not (self.audio and sink.audio_enabled):
                    continue
                if encoder is None:
                    encoder = OpusPackets(channels=2 if len(frame.layout.channels) > 1 else 1)
                for packet_pts, data in encoder.encode(frame, pts):
                    await sink.audio("opus", packet_pts, data, 48_000, encoder.channels)
        except MediaStreamError:
            self._end("audio track ended")
