"""aiortc peers for tests: a WHIP publisher drawing a frame counter and a tone, and a WHEP
viewer that reads the counter back. They run in the test process, on loopback only."""

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
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from benchmarks.media.clip import ClipSpec, audio_frame, video_frame

SPEC = ClipSpec(width=256, height=256, fps=30, audio_channels=1)
VIDEO_TIME_BASE = fractions.Fraction(1, 90_000)


@contextlib.contextmanager
def loopback_candidates() -> Iterator[None]:
    """The test's own peers offer 127.0.0.1 (aioice never gathers loopback by itself). Only the
    test client is patched; the runner finds loopback addresses without help."""
    original = aioice.ice.get_host_addresses
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = original


class StartClock:
    """The instant a publisher's tracks start from: frame ``i`` and tone sample ``s`` are due at
    ``start + i / fps`` and ``start + s / rate``, whichever track asks first."""

    def __init__(self) -> None:
        self.start: float | None = None

    def origin(self) -> float:
        if self.start is None:
            self.start = time.monotonic()
        return self.start


class CounterTrack(MediaStreamTrack):
    """Video frames with a frame counter, paced at the clip's frame rate."""

    kind = "video"

    def __init__(
        self,
        spec: ClipSpec = SPEC,
        *,
        frames: int | None = None,
        clock: StartClock | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.frames = frames
        self.sent = 0
        self.sent_at: list[float] = []
        """When frame ``i`` left this track (monotonic seconds), for latency measurements."""
        self.clock = clock or StartClock()
        self.flowing = asyncio.Event()
        self.flowing.set()
        """Cleared: the track stops sending (a peer that went silent)."""

    async def recv(self) -> av.VideoFrame:  # type: ignore[override]
        start = self.clock.origin()
        index = self.sent
        if self.frames is not None and index >= self.frames:
            self.stop()
            raise MediaStreamError
        wait = start + index / self.spec.fps - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        await self.flowing.wait()
        frame = video_frame(self.spec, index)
        frame.pts = index * 90_000 // self.spec.fps
        frame.time_base = VIDEO_TIME_BASE
        self.sent += 1
        self.sent_at.append(time.monotonic())
        return frame


class ToneTrack(MediaStreamTrack):
    """A 440 Hz tone in 20 ms frames, paced in real time. With ``beeps`` the tone sounds only
    for the first 100 ms of every second (onsets at sample ``k * rate``: frame ``k * fps``)."""

    kind = "audio"

    def __init__(
        self, spec: ClipSpec = SPEC, *, clock: StartClock | None = None, beeps: bool = False
    ) -> None:
        super().__init__()
        self.spec = spec
        self.clock = clock or StartClock()
        self.beeps = beeps
        self.samples = 0
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=spec.audio_rate)
        self.flowing = asyncio.Event()
        self.flowing.set()
        """Cleared: the track stops sending (a peer that went silent)."""

    async def recv(self) -> av.AudioFrame:  # type: ignore[override]
        start = self.clock.origin()
        wait = start + self.samples / self.spec.audio_rate - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        await self.flowing.wait()
        size = self.spec.audio_rate // 50
        tone = audio_frame(self.spec, self.samples, size)
        if self.beeps and self.samples % self.spec.audio_rate >= self.spec.audio_rate // 10:
            tone = av.AudioFrame.from_ndarray(
                np.zeros((1, size), np.float32), format="fltp", layout="mono"
            )
            tone.sample_rate = self.spec.audio_rate
        tone.pts = None
        (frame,) = self._resampler.resample(tone)  # aiortc's Opus encoder takes s16 only
        frame.pts = self.samples
        frame.time_base = fractions.Fraction(1, self.spec.audio_rate)
        self.samples += size
        return frame


@dataclass
class Publisher:
    """A WHIP publisher: its peer connection, tracks and the 201's headers."""

    pc: RTCPeerConnection
    video: CounterTrack
    audio: ToneTrack | None
    status: int
    location: str
    etag: str
    links: list[str]
    answer: str


async def publisher_offer(
    *, audio: bool = True, codec: str | None = None, videos: int = 1, beeps: bool = False
) -> tuple[RTCPeerConnection, CounterTrack, ToneTrack | None]:
    """A publishing peer with its offer set as local description."""
    pc = RTCPeerConnection()
    clock = StartClock()
    video = CounterTrack(clock=clock)
    transceiver = pc.addTransceiver(video, direction="sendonly")
    for _ in range(videos - 1):  # more video tracks than a WHIP session may carry
        pc.addTransceiver(CounterTrack(), direction="sendonly")
    if codec is not None:
        caps = RTCRtpSender.getCapabilities("video")
        assert caps is not None
        transceiver.setCodecPreferences([c for c in caps.codecs if c.mimeType == codec])
    tone = ToneTrack(clock=clock, beeps=beeps) if audio else None
    if tone is not None:
        pc.addTransceiver(tone, direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, video, tone


async def whip_publish(
    http: aiohttp.ClientSession,
    url: str,
    *,
    audio: bool = True,
    codec: str | None = None,
    headers: dict[str, str] | None = None,
) -> Publisher:
    """Offer a counter video (and a tone) to a WHIP endpoint; returns once answered."""
    pc, video, tone = await publisher_offer(audio=audio, codec=codec)
    async with http.post(
        url,
        data=pc.localDescription.sdp,
        headers={"Content-Type": "application/sdp", **(headers or {})},
    ) as response:
        body = await response.text()
        if response.status != 201:
            await pc.close()
            raise AssertionError(f"WHIP POST answered {response.status}: {body}")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
        return Publisher(
            pc,
            video,
            tone,
            response.status,
            response.headers["Location"],
            response.headers["ETag"],
            response.headers.getall("Link", []),
            body,
        )


@dataclass
class Received:
    """What a WHEP viewer got."""

    counters: list[int | None] = field(default_factory=list)
    inverted: list[bool] = field(default_factory=list)
    arrival: list[float] = field(default_factory=list)
    audio_frames: int = 0
    audio_levels: list[float] = field(default_factory=list)
    codec: str = ""


def read_counter_either_way(frame: av.VideoFrame) -> tuple[int | None, bool]:
    """The clip frame a received picture shows, and whether it was inverted."""
    from tests.e2e.conftest import identify

    luma = frame.to_ndarray(format="gray")
    counter, inverted = identify(luma, SPEC)
    return counter, bool(inverted)


@dataclass
class Viewer:
    pc: RTCPeerConnection
    received: Received
    location: str
    etag: str
    tasks: list[asyncio.Task[None]]

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.pc.close()


async def _drain(track: MediaStreamTrack, received: Received) -> None:
    with contextlib.suppress(MediaStreamError):
        while True:
            frame = await track.recv()
            if isinstance(frame, av.VideoFrame):
                counter, inverted = read_counter_either_way(frame)
                received.counters.append(counter)
                received.inverted.append(inverted)
                received.arrival.append(time.monotonic())
            elif isinstance(frame, av.AudioFrame):
                received.audio_frames += 1
                samples = frame.to_ndarray().astype(np.float32)
                received.audio_levels.append(float(np.abs(samples).mean()))


async def viewer_offer(
    *, audio: bool = True, codec: str | None = None
) -> tuple[RTCPeerConnection, Received, list[asyncio.Task[None]]]:
    """A receiving peer (video, and audio) with its offer set as local description."""
    pc = RTCPeerConnection()
    received = Received()
    tasks: list[asyncio.Task[None]] = []
    video = pc.addTransceiver("video", direction="recvonly")
    if codec is not None:
        caps = RTCRtpReceiver.getCapabilities("video")
        assert caps is not None
        video.setCodecPreferences([c for c in caps.codecs if c.mimeType == codec])
    if audio:
        pc.addTransceiver("audio", direction="recvonly")

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        tasks.append(asyncio.create_task(_drain(track, received)))

    await pc.setLocalDescription(await pc.createOffer())
    return pc, received, tasks


def answered_codec(sdp: str) -> str:
    """The first video codec of an answer."""
    in_video = False
    for line in sdp.splitlines():
        if line.startswith("m="):
            in_video = line.startswith("m=video")
        elif in_video and line.startswith("a=rtpmap:"):
            return line.split(" ", 1)[1].split("/")[0]
    return ""


async def whep_view(
    http: aiohttp.ClientSession,
    url: str,
    *,
    audio: bool = True,
    codec: str | None = None,
    headers: dict[str, str] | None = None,
    expect: int = 201,
) -> Viewer | aiohttp.ClientResponse:
    """Offer to a WHEP endpoint (recvonly video, and audio); returns the viewer once answered,
    or the response when it was not 201 (its body already read)."""
    pc, received, tasks = await viewer_offer(audio=audio, codec=codec)
    async with http.post(
        url,
        data=pc.localDescription.sdp,
        headers={"Content-Type": "application/sdp", **(headers or {})},
    ) as response:
        body = await response.text()
        if response.status != 201:
            await pc.close()
            assert response.status == expect, body
            return response
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
        received.codec = answered_codec(body)
        return Viewer(pc, received, response.headers["Location"], response.headers["ETag"], tasks)
