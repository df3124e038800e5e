"""The WHEP viewers of one stream: a peer connection per viewer, all fed by one source.

``answer`` takes a viewer's offer (``PeerOffer`` from the parent) and returns a ``sendonly``
answer with every candidate. Video codecs: H.264 first (the one OBS's WHEP source takes), VP8
when the viewer offers only that; audio Opus. A viewer's PLI/FIR asks its encoder for a keyframe
at most once per ``KEYFRAME_MIN_INTERVAL_S`` (OBS sends a PLI every 500 ms while it waits for
one). A viewer whose connection fails or closes is dropped and reported (``PeerGone``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import av
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from byoc.livepeer.webrtc.codecs import order_codecs
from byoc.livepeer.webrtc.ice import rtc_configuration
from byoc.livepeer.webrtc.sdp import SdpError, parse_fragment
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
KEYFRAME_MIN_INTERVAL_S = 1.0

Send = Callable[[Message], Awaitable[None]]


def throttle_keyframes(sender: RTCRtpSender, min_interval_s: float) -> dict[str, int]:
    """Let ``sender`` honour at most one keyframe request per ``min_interval_s``; returns its
    counters (``keyframe_requests``, ``keyframes_forced``)."""
    counters = {"keyframe_requests": 0, "keyframes_forced": 0}
    original = sender._send_keyframe
    last = [-min_interval_s]

    def send_keyframe() -> None:
        counters["keyframe_requests"] += 1
        now = time.monotonic()
        if now - last[0] >= min_interval_s:
            last[0] = now
            counters["keyframes_forced"] += 1
            original()

    sender._send_keyframe = send_keyframe  # type: ignore[method-assign]
    return counters


@dataclass
class Viewer:
    """One WHEP viewer."""

    peer_id: str
    pc: RTCPeerConnection
    video: ViewerVideoTrack
    audio: ViewerAudio
    keyframes: dict[str, int]


class StreamViewers:
    """Every WHEP viewer of one stream (see the module docstring)."""

    def __init__(self, stream_id: str, send: Send) -> None:
        self.stream_id = stream_id
        self.pictures = StreamPictures()
        self.viewers: dict[str, Viewer] = {}
        self._send = send
        self._closing = False
        self.counters: dict[DropReason, int] = {}

    def __len__(self) -> int:
        return len(self.viewers)

    def publish(self, picture: av.VideoFrame, source_pts: int) -> None:
        self.pictures.publish(picture, source_pts)

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
        out["whep_skipped"] = out.get("whep_skipped", 0) + viewer.video.skipped
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
        video = ViewerVideoTrack(self.pictures)
        audio = ViewerAudio(self.pictures)
        keyframes: dict[str, int] = {}
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
            for transceiver in pc.getTransceivers():
                if transceiver.kind == "video":
                    order_codecs(transceiver, VIDEO_CODECS)
                    transceiver.sender.replaceTrack(video)
                    keyframes = throttle_keyframes(transceiver.sender, KEYFRAME_MIN_INTERVAL_S)
                else:
                    order_codecs(transceiver, AUDIO_CODECS)
                    transceiver.sender.replaceTrack(ViewerAudioTrack(audio, label=self.stream_id))
                transceiver.direction = "sendonly"
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # aiortc raises ValueError, KeyError, ... for bad offers
            log.info("stream %s: WHEP offer rejected: %r", self.stream_id, exc)
            await pc.close()
            return reply(400, error=f"the offer cannot be answered: {exc}")
        viewer = Viewer(offer.peer_id, pc, video, audio, keyframes)
        self.viewers[offer.peer_id] = viewer
        self.pictures.viewers = len(self.viewers)
        pc.on("connectionstatechange", lambda: self._on_state(viewer))
        log.info(
            "stream %s: WHEP viewer %s answered (%d viewers)",
            self.stream_id,
            offer.peer_id,
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
        self.pictures.viewers = len(self.viewers)
        self._add(self.counters, viewer)
        viewer.video.stop()
        await viewer.pc.close()
        log.info(
            "stream %s: WHEP viewer %s gone (%s; %d frames sent, %d keyframe requests)",
            self.stream_id,
            peer_id,
            reason,
            viewer.video.sent,
            viewer.keyframes.get("keyframe_requests", 0),
        )
        return True
