"""The benchmark's own WebRTC peers (aiortc, in the harness process): a WHIP publisher whose
pictures carry the clip's frame counter, stamped when each picture leaves for the encoder, and
WHEP viewers that read the counter back from every decoded picture and stamp its arrival."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import aiohttp
import aioice.ice
import av
from aiortc import (
    MediaStreamTrack,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from benchmarks.latency.figures import unwrap_counter
from benchmarks.latency.sink import output_counter
from benchmarks.media.clip import ClipSpec, video_frame

VIDEO_TIME_BASE = fractions.Fraction(1, 90_000)
H264 = ("video/H264", "video/rtx")
RETRY_S = 0.02  # between WHEP attempts while a session is not live yet


@contextlib.contextmanager
def loopback_candidates() -> Iterator[None]:
    """Offer 127.0.0.1 as this process's host candidate (aioice never gathers loopback)."""
    original = aioice.ice.get_host_addresses
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = original


def prefer_h264(transceiver: object, kind: str = "send") -> None:
    """Offer H.264 only (both systems then encode and decode the same codec)."""
    caps = (RTCRtpSender if kind == "send" else RTCRtpReceiver).getCapabilities("video")
    assert caps is not None
    transceiver.setCodecPreferences([c for c in caps.codecs if c.mimeType in H264])  # type: ignore[attr-defined]


class CounterSource(MediaStreamTrack):
    """Counter pictures paced at the clip's frame rate from the first ``recv``; ``sent_at[i]``
    is when picture ``i`` was handed to the encoder (monotonic seconds)."""

    kind = "video"

    def __init__(self, spec: ClipSpec) -> None:
        super().__init__()
        self.spec = spec
        self.start: float | None = None
        self.sent_at: list[float] = []

    def expected_index(self, at: float) -> float:
        """The index due at monotonic time ``at``."""
        return 0.0 if self.start is None else (at - self.start) * self.spec.fps

    async def recv(self) -> av.VideoFrame:  # type: ignore[override]
        if self.start is None:
            self.start = time.monotonic()
        index = len(self.sent_at)
        wait = self.start + index / self.spec.fps - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        frame = video_frame(self.spec, index)
        frame.pts, frame.time_base = index * 90_000 // self.spec.fps, VIDEO_TIME_BASE
        self.sent_at.append(time.monotonic())
        return frame


@dataclass
class Publisher:
    pc: RTCPeerConnection
    source: CounterSource
    location: str
    posted_at: float
    """When the WHIP ``POST`` left (monotonic seconds)."""
    answered_at: float
    """When its 201 came back."""


async def whip_publish(http: aiohttp.ClientSession, url: str, spec: ClipSpec) -> Publisher:
    """Offer the counter video to a WHIP endpoint; returns once answered (201)."""
    pc = RTCPeerConnection()
    source = CounterSource(spec)
    try:
        prefer_h264(pc.addTransceiver(source, direction="sendonly"))
        await pc.setLocalDescription(await pc.createOffer())
        posted_at = time.monotonic()
        async with http.post(
            url, data=pc.localDescription.sdp, headers={"Content-Type": "application/sdp"}
        ) as response:
            body = await response.text()
            if response.status != 201:
                raise RuntimeError(f"WHIP POST {url} answered {response.status}: {body[:300]}")
            await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
            location = response.headers.get("Location", "")
            return Publisher(pc, source, location, posted_at, time.monotonic())
    except BaseException:
        await pc.close()
        raise


@dataclass
class Viewer:
    """One WHEP viewer: per frame index, when its picture was decoded here."""

    pc: RTCPeerConnection
    source: CounterSource
    inverted: bool
    arrivals: dict[int, float] = field(default_factory=dict)
    unreadable: int = 0
    repeated: int = 0
    task: asyncio.Task[None] | None = None
    answered_at: float | None = None
    """When its WHEP ``POST`` was answered 201 (monotonic seconds)."""

    def first_arrival(self) -> float | None:
        return min(self.arrivals.values()) if self.arrivals else None

    async def drain(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                arrived = time.monotonic()
                if not isinstance(frame, av.VideoFrame):
                    continue
                value = output_counter(frame, inverted=self.inverted)
                if value is None:
                    self.unreadable += 1
                    continue
                index = unwrap_counter(value, self.source.expected_index(arrived))
                if index in self.arrivals or index >= len(self.source.sent_at):
                    self.repeated += 1  # a repeat, or a misread into the future
                    continue
                self.arrivals[index] = arrived

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.pc.close()


async def whep_view(
    http: aiohttp.ClientSession,
    url: str,
    source: CounterSource,
    *,
    inverted: bool,
    timeout_s: float,
) -> Viewer:
    """A WHEP viewer of ``url``, retried while the session is not live yet (409/503)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        pc = RTCPeerConnection()
        viewer = Viewer(pc, source, inverted)
        try:
            prefer_h264(pc.addTransceiver("video", direction="recvonly"), kind="receive")

            @pc.on("track")
            def on_track(track: MediaStreamTrack, viewer: Viewer = viewer) -> None:
                viewer.task = asyncio.create_task(viewer.drain(track))

            await pc.setLocalDescription(await pc.createOffer())
            async with http.post(
                url, data=pc.localDescription.sdp, headers={"Content-Type": "application/sdp"}
            ) as response:
                body = await response.text()
                if response.status == 201:
                    viewer.answered_at = time.monotonic()
                    await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
                    return viewer
                if response.status not in (409, 503) or loop.time() > deadline:
                    raise RuntimeError(f"WHEP POST {url} answered {response.status}: {body[:300]}")
        except BaseException:
            await viewer.close()
            raise
        await viewer.close()
        await asyncio.sleep(RETRY_S)
