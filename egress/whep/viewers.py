"""The WHEP viewers of one stream: a peer connection per viewer, all fed by one source.

``answer`` takes a viewer's offer (``PeerOffer`` from the parent) and returns a ``sendonly``
answer with every candidate. Video codecs: H.264 first (the one OBS's WHEP source takes), VP8
when the viewer offers only that; audio Opus. Video is encoded once per codec for every viewer
(``egress.whep.source``); the H.264 answer names the one ``profile-level-id`` the shared encoder
writes (Constrained Baseline at a level for the picture size, ``egress.whep.h264``), whatever
the offer listed. A viewer's PLI/FIR goes to the shared encoder, which honours at most one per
``WhepEncoding.keyframe_min_interval_s`` for all viewers together (OBS sends a PLI every 500 ms
while it waits for one). A viewer whose connection fails or closes is dropped and reported
(``PeerGone``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

import av
from aiortc import RTCPeerConnection, RTCRtpSender, RTCRtpTransceiver, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from byoc.livepeer.webrtc.codecs import order_codecs
from byoc.livepeer.webrtc.ice import rtc_configuration
from byoc.livepeer.webrtc.sdp import SdpError, parse_fragment
from egress.whep.encoders import SharedVideoEncoder, VideoCodec
from egress.whep.h264 import constrained_baseline_id, level_for
from egress.whep.source import StreamPictures, ViewerAudio
from egress.whep.tracks import ViewerAudioTrack, ViewerVideoTrack
from ipc.messages import (
    DropReason,
    Message,
    PeerAnswer,
    PeerCandidates,
    PeerClose,
    PeerGone,
    PeerOffer,
    StreamAudio,
)

log = logging.getLogger(__name__)

VIDEO_CODECS = ("video/H264", "video/VP8")
AUDIO_CODECS = ("audio/opus",)
Send = Callable[[Message], Awaitable[None]]


@dataclass(frozen=True)
class WhepEncoding:
    """How the stream's shared encoders run."""

    preset: str = "superfast"
    """libx264 preset (``tune=zerolatency`` always)."""
    bit_rate: int = 1_500_000
    """Bits per second of every codec's stream."""
    keyframe_min_interval_s: float = 0.5
    """Shortest time between two keyframes forced by requests (joins, PLI/FIR)."""
    max_size: tuple[int, int] = (1920, 1080)
    """The largest picture the stream may carry: the H.264 level when no picture came yet."""


def route_keyframe_requests(sender: RTCRtpSender, track: ViewerVideoTrack) -> None:
    """Send ``sender``'s PLI/FIR keyframe requests to the shared encoder through ``track``:
    aiortc's own flag only reaches an encoder of its own, which a packet track does not use."""
    sender._send_keyframe = track.request_keyframe  # type: ignore[method-assign]


def answer_one_h264(transceiver: RTCRtpTransceiver, profile_level_id: str) -> None:
    """Keep the first negotiated H.264 codec (with its RTX), naming ``profile_level_id``: what
    the shared encoder writes, not what the offer listed."""
    kept, dropped_pts = [], set()
    seen_h264 = False
    for codec in transceiver._codecs:
        if codec.mimeType.lower() == "video/h264":
            if seen_h264:
                dropped_pts.add(codec.payloadType)
                continue
            seen_h264 = True
            codec.parameters["profile-level-id"] = profile_level_id
        kept.append(codec)
    transceiver._codecs = [c for c in kept if c.parameters.get("apt") not in dropped_pts]


@dataclass
class Viewer:
    """One WHEP viewer."""

    peer_id: str
    pc: RTCPeerConnection
    video: ViewerVideoTrack | None
    """None for a viewer that takes audio only."""
    audio: ViewerAudio


class StreamViewers:
    """Every WHEP viewer of one stream (see the module docstring)."""

    def __init__(self, stream_id: str, send: Send, encoding: WhepEncoding | None = None) -> None:
        self.stream_id = stream_id
        self.encoding = encoding or WhepEncoding()
        self.pictures = StreamPictures(self._new_encoder, label=stream_id)
        self.viewers: dict[str, Viewer] = {}
        self._send = send
        self._closing = False
        self.counters: dict[DropReason, int] = {}

    def __len__(self) -> int:
        return len(self.viewers)

    async def publish(self, picture: av.VideoFrame, source_pts: int) -> None:
        await self.pictures.publish(picture, source_pts)

    def encoder_stats(self) -> dict[str, int]:
        """The shared encoders' totals (``StreamPictures.encoder_stats``) and ``viewers``."""
        return {"viewers": len(self.viewers), **self.pictures.encoder_stats()}

    def h264_level(self) -> int:
        """The level of the stream's H.264: the running encoder's, or one for the newest picture
        (the largest the stream may carry before any)."""
        feed = self.pictures.feeds.get("H264")
        if feed is not None:
            return feed.encoder.level_idc
        width, height = self.pictures.size or self.encoding.max_size
        return level_for(width, height, bit_rate=self.encoding.bit_rate)

    def _new_encoder(self, codec: VideoCodec) -> SharedVideoEncoder:
        return SharedVideoEncoder(
            codec,
            preset=self.encoding.preset,
            bit_rate=self.encoding.bit_rate,
            level_idc=self.h264_level(),
            keyframe_min_interval_s=self.encoding.keyframe_min_interval_s,
            label=self.stream_id,
        )

    def audio(self, message: StreamAudio) -> None:
        for viewer in self.viewers.values():
            viewer.audio.push(message)

    def dropped(self) -> dict[DropReason, int]:
        """Per-reason totals over current viewers and those gone."""
        out = dict(self.counters)
        for viewer in self.viewers.values():
            self._add(out, viewer)
        return out

    @staticmethod
    def _add(out: dict[DropReason, int], viewer: Viewer) -> None:
        skipped = viewer.video.skipped if viewer.video is not None else 0
        out["whep_skipped"] = out.get("whep_skipped", 0) + skipped
        out["audio_whep_overflow"] = out.get("audio_whep_overflow", 0) + viewer.audio.dropped

    async def answer(self, offer: PeerOffer) -> PeerAnswer:
        def reply(status: int, sdp: str = "", error: str = "") -> PeerAnswer:
            return PeerAnswer(
                stream_id=self.stream_id,
                peer_id=offer.peer_id,
                request_id=offer.request_id,
                status=status,
                sdp=sdp,
                error=error,
            )

        if self._closing:
            return reply(404, error="the stream has ended")
        pc = RTCPeerConnection(rtc_configuration(offer.ice_servers))
        audio = ViewerAudio(self.pictures)
        video: ViewerVideoTrack | None = None
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
            for transceiver in pc.getTransceivers():
                if transceiver.kind == "video":
                    codec = cast(VideoCodec, order_codecs(transceiver, VIDEO_CODECS)[0][6:])
                    if codec == "H264":
                        answer_one_h264(transceiver, constrained_baseline_id(self.h264_level()))
                    if video is not None:
                        raise ValueError("more than one video track")
                    video = ViewerVideoTrack(self.pictures.attach(codec))
                    transceiver.sender.replaceTrack(video)
                    route_keyframe_requests(transceiver.sender, video)
                else:
                    order_codecs(transceiver, AUDIO_CODECS)
                    transceiver.sender.replaceTrack(ViewerAudioTrack(audio, label=self.stream_id))
                transceiver.direction = "sendonly"
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # aiortc raises ValueError, KeyError, ... for bad offers
            log.info("stream %s: WHEP offer rejected: %r", self.stream_id, exc)
            if video is not None:
                video.stop()
                self.pictures.detach(video.feed)
            await pc.close()
            return reply(400, error=f"the offer cannot be answered: {exc}")
        viewer = Viewer(offer.peer_id, pc, video, audio)
        self.viewers[offer.peer_id] = viewer
        pc.on("connectionstatechange", lambda: self._on_state(viewer))
        log.info(
            "stream %s: WHEP viewer %s answered with %s (%d viewers)",
            self.stream_id,
            offer.peer_id,
            video.feed.encoder.codec if video is not None else "audio only",
            len(self.viewers),
        )
        return reply(201, sdp=pc.localDescription.sdp)

    async def add_candidates(self, message: PeerCandidates) -> PeerAnswer:
        viewer = self.viewers.get(message.peer_id)
        status, error = 204, ""
        if viewer is None:
            status, error = 404, "no such viewer"
        else:
            try:
                fragment = parse_fragment(message.sdpfrag)
            except SdpError as exc:
                status, error = exc.status, str(exc)
            else:
                for line in fragment.candidates:
                    try:
                        candidate = candidate_from_sdp(line.split(":", 1)[1])
                        candidate.sdpMLineIndex = 0
                        await viewer.pc.addIceCandidate(candidate)
                    except Exception as exc:
                        log.info("stream %s: candidate ignored: %r", self.stream_id, exc)
        return PeerAnswer(
            stream_id=self.stream_id,
            peer_id=message.peer_id,
            request_id=message.request_id,
            status=status,
            error=error,
        )

    async def close_viewer(self, message: PeerClose) -> PeerAnswer:
        found = await self._drop(message.peer_id, "closed by its DELETE")
        return PeerAnswer(
            stream_id=self.stream_id,
            peer_id=message.peer_id,
            request_id=message.request_id,
            status=200 if found else 404,
            error="" if found else "no such viewer",
        )

    async def close(self) -> None:
        """Close every viewer (the stream ended)."""
        self._closing = True
        self.pictures.close()
        for peer_id in list(self.viewers):
            await self._drop(peer_id, "stream ended")

    def _on_state(self, viewer: Viewer) -> None:
        state = viewer.pc.connectionState
        if state in ("failed", "closed") and self.viewers.get(viewer.peer_id) is viewer:
            asyncio.get_running_loop().create_task(self._gone(viewer.peer_id, state))

    async def _gone(self, peer_id: str, state: str) -> None:
        if await self._drop(peer_id, f"connection {state}"):
            await self._send(
                PeerGone(stream_id=self.stream_id, peer_id=peer_id, reason=f"connection {state}")
            )

    async def _drop(self, peer_id: str, reason: str) -> bool:
        viewer = self.viewers.pop(peer_id, None)
        if viewer is None:
            return False
        self._add(self.counters, viewer)
        if viewer.video is not None:
            viewer.video.stop()
            self.pictures.detach(viewer.video.feed)
        await viewer.pc.close()
        log.info(
            "stream %s: WHEP viewer %s gone (%s; %d frames sent, %d keyframe requests)",
            self.stream_id,
            peer_id,
            reason,
            viewer.video.sent if viewer.video is not None else 0,
            viewer.video.keyframe_requests if viewer.video is not None else 0,
        )
        return True
