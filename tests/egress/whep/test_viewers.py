"""WHEP viewers of one stream sharing one encoder per codec, with real aiortc viewers over
loopback sockets: the viewers' own decoders read the counter back, and what their H.264
decoder was fed (the depayloaded access units, recorded before decoding) is parsed for SPS,
PPS and IDRs."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import av
import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.codecs.h264 import H264Decoder
from aiortc.mediastreams import MediaStreamError

from benchmarks.media.clip import ClipSpec, read_frame_counter, video_frame
from egress.whep.h264 import nal_type, nal_units, sps_profile_level_id
from egress.whep.viewers import StreamViewers, WhepEncoding
from ipc.messages import Message, PeerClose, PeerOffer
from tests.byoc.harness import wait_until
from tests.byoc.webrtc_clients import answered_codec, loopback_candidates

SPEC = ClipSpec(width=320, height=240, fps=30, audio_channels=1)
HANG_GUARD_S = 60


@dataclass
class WatchingPeer:
    pc: RTCPeerConnection
    answer: str
    counters: list[int | None] = field(default_factory=list)
    access_units: list[bytes] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def decoded(self) -> int:
        return sum(c is not None for c in self.counters)

    def idrs(self) -> int:
        return sum(any(nal_type(n) == 5 for n in nal_units(au)) for au in self.access_units)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.pc.close()


class Recorder:
    """Which viewer's H.264 decoder was fed which access units (aiortc's decoder, unchanged,
    decodes them afterwards)."""

    def __init__(self) -> None:
        self.by_decoder: dict[int, list[bytes]] = {}
        self.timestamps: dict[int, list[int]] = {}

    @contextlib.contextmanager
    def installed(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
        original = H264Decoder.decode
        by_decoder, timestamps = self.by_decoder, self.timestamps

        def decode(self: H264Decoder, encoded_frame):  # type: ignore[no-untyped-def]
            by_decoder.setdefault(id(self), []).append(bytes(encoded_frame.data))
            timestamps.setdefault(id(self), []).append(encoded_frame.timestamp)
            return original(self, encoded_frame)

        monkeypatch.setattr(H264Decoder, "decode", decode)
        yield


class Stream:
    """A stream's viewers fed with the counter clip at its frame rate."""

    def __init__(self, viewers: StreamViewers) -> None:
        self.viewers = viewers
        self.published = 0
        self._task: asyncio.Task[None] | None = None

    async def _publish(self) -> None:
        index = 0
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            frame = video_frame(SPEC, index)
            await self.viewers.publish(frame, SPEC.pts(index))
            index += 1
            self.published = index
            await asyncio.sleep(max(0.0, start + index / SPEC.fps - loop.time()))

    def start(self) -> None:
        self._task = asyncio.create_task(self._publish())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.viewers.close()


@pytest.fixture
async def stream() -> AsyncIterator[Stream]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    with loopback_candidates():
        s = Stream(StreamViewers("shared", send, WhepEncoding(bit_rate=1_000_000)))
        s.start()
        try:
            yield s
        finally:
            await s.stop()


async def _drain(track: MediaStreamTrack, viewer: WatchingPeer) -> None:
    with contextlib.suppress(MediaStreamError):
        while True:
            frame = await track.recv()
            if isinstance(frame, av.VideoFrame):
                viewer.counters.append(read_frame_counter(frame))


async def join(stream: Stream, *, codec: str | None = None, video: bool = True) -> WatchingPeer:
    pc = RTCPeerConnection()
    if not video:
        pc.addTransceiver("audio", direction="recvonly")
        codec = None
    transceiver = pc.addTransceiver("video", direction="recvonly") if video else None
    if codec is not None and transceiver is not None:
        caps = RTCRtpReceiver.getCapabilities("video")
        assert caps is not None
        transceiver.setCodecPreferences([c for c in caps.codecs if c.mimeType == codec])
    viewer = WatchingPeer(pc, "")

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        viewer.tasks.append(asyncio.create_task(_drain(track, viewer)))

    await pc.setLocalDescription(await pc.createOffer())
    reply = await stream.viewers.answer(
        PeerOffer(
            stream_id="shared",
            peer_id=secrets.token_hex(4),
            request_id="r",
            role="whep",
            sdp=pc.localDescription.sdp,
        )
    )
    assert reply.status == 201, reply.error
    viewer.answer = reply.sdp
    await pc.setRemoteDescription(RTCSessionDescription(sdp=reply.sdp, type="answer"))
    return viewer


def answered_profile_level_id(sdp: str) -> str:
    [line] = [x for x in sdp.splitlines() if "profile-level-id=" in x]
    return line.split("profile-level-id=", 1)[1].split(";", 1)[0]


async def test_two_viewers_decode_one_shared_h264_encode(
    stream: Stream, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder()
    with recorder.installed(monkeypatch):
        first = await join(stream)
        second = await join(stream)
        try:
            await wait_until(lambda: first.decoded >= 30 and second.decoded >= 30, HANG_GUARD_S)
            stats = stream.viewers.encoder_stats()
            assert stats["viewers"] == 2
            assert stats["encoders"] == 1 and stats["encoders_opened"] == 1
            # One encode per picture for both viewers, not one per viewer (the encode thread may be
            # one picture ahead of the count of pictures when the figures are read).
            assert stats["pictures"] <= stats["frames_encoded"] <= stats["pictures"] + 1
            for viewer in (first, second):
                counters = [c for c in viewer.counters if c is not None]
                assert counters == sorted(counters) and len(set(counters)) == len(counters)
            units = [au for units in recorder.by_decoder.values() for au in units]
            assert len(recorder.by_decoder) == 2
            answered = answered_profile_level_id(first.answer)
            assert answered == answered_profile_level_id(second.answer)
            assert answered[:4] == "42c0", "Constrained Baseline"
            idrs = 0
            for au in units:
                types = [nal_type(n) for n in nal_units(au)]
                if 5 in types:
                    idrs += 1
                    assert 7 in types and 8 in types, "SPS and PPS before every IDR"
                    assert types.index(7) < types.index(5) and types.index(8) < types.index(5)
                    assert sps_profile_level_id(au) == answered
            assert idrs >= 2
        finally:
            await first.close()
            await second.close()


def idr_count(units: list[bytes]) -> int:
    return sum(any(nal_type(n) == 5 for n in nal_units(au)) for au in units)


async def send_pli(viewer: WatchingPeer) -> None:
    [receiver] = [t.receiver for t in viewer.pc.getTransceivers() if t.kind == "video"]
    ssrcs = list(receiver._RTCRtpReceiver__remote_streams)  # type: ignore[attr-defined]
    await receiver._send_rtcp_pli(ssrcs[0])


async def test_a_viewer_asking_for_keyframes_all_the_time_gets_one_per_window(
    stream: Stream, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder()
    with recorder.installed(monkeypatch):
        viewer = await join(stream)
        try:
            await wait_until(lambda: viewer.decoded >= 5, HANG_GUARD_S)
            start = stream.viewers.encoder_stats()
            decoded_before = len(viewer.counters)

            async def asked_enough() -> bool:
                for _ in range(5):
                    await send_pli(viewer)
                    await asyncio.sleep(0.002)
                return len(viewer.counters) >= decoded_before + 90  # three seconds of video

            await wait_until(asked_enough, HANG_GUARD_S, interval=0)
            stats = stream.viewers.encoder_stats()
            [(key, units)] = recorder.by_decoder.items()
            stamps = recorder.timestamps[key]
            first = len(units) - (len(viewer.counters) - decoded_before)
            asked = units[first:]
            span_s = ((stamps[-1] - stamps[first]) % 2**32) / 90_000
            window = stream.viewers.encoding.keyframe_min_interval_s
            requests = stats["keyframe_requests"] - start["keyframe_requests"]
            assert requests >= 90, "the viewer's PLIs reach the shared encoder"
            idrs = idr_count(asked)
            # One forced IDR per window at most (plus the periodic ones and one of slack), on the
            # stream's own clock; and the requests were honoured, not dropped.
            assert 2 <= idrs <= span_s / window + span_s / 4 + 2, (idrs, span_s)
            assert idrs < len(asked) / 5, "not all-intra"
            counters = [c for c in viewer.counters if c is not None]
            assert counters == sorted(counters)
        finally:
            await viewer.close()


async def test_viewers_leave_without_disturbing_the_others_and_the_last_stops_the_encoder(
    stream: Stream,
) -> None:
    first = await join(stream)
    second = await join(stream)
    third: WatchingPeer | None = None
    try:
        await wait_until(lambda: first.decoded >= 10 and second.decoded >= 10, HANG_GUARD_S)
        [first_id, second_id] = list(stream.viewers.viewers)
        reply = await stream.viewers.close_viewer(
            PeerClose(stream_id="shared", peer_id=first_id, request_id="c1")
        )
        assert reply.status == 200
        after = second.decoded
        await wait_until(lambda: second.decoded >= after + 30, HANG_GUARD_S)
        counters = [c for c in second.counters if c is not None]
        assert counters == sorted(counters) and len(set(counters)) == len(counters)
        stats = stream.viewers.encoder_stats()
        assert stats["viewers"] == 1 and stats["encoders"] == 1 and stats["encoders_opened"] == 1
        await stream.viewers.close_viewer(
            PeerClose(stream_id="shared", peer_id=second_id, request_id="c2")
        )
        idle = stream.viewers.encoder_stats()
        assert idle["viewers"] == 0 and idle["encoders"] == 0
        published = stream.published
        await wait_until(lambda: stream.published >= published + 15, HANG_GUARD_S)
        assert stream.viewers.encoder_stats()["frames_encoded"] == idle["frames_encoded"], (
            "nothing is encoded while nobody watches"
        )
        third = await join(stream)  # mid-stream: starts at the IDR its join asked for
        await wait_until(lambda: third.decoded >= 10, HANG_GUARD_S)
        assert stream.viewers.encoder_stats()["encoders_opened"] == 2
    finally:
        for viewer in (first, second, third):
            if viewer is not None:
                await viewer.close()


async def test_h264_and_vp8_viewers_get_one_encoder_each(stream: Stream) -> None:
    viewers = [
        await join(stream),
        await join(stream, codec="video/VP8"),
        await join(stream, codec="video/VP8"),
    ]
    try:
        assert answered_codec(viewers[0].answer) == "H264"
        assert answered_codec(viewers[1].answer) == "VP8"
        await wait_until(lambda: all(v.decoded >= 30 for v in viewers), HANG_GUARD_S)
        stats = stream.viewers.encoder_stats()
        assert stats["encoders"] == 2 and stats["encoders_opened"] == 2
        assert stats["frames_encoded"] <= 2 * stats["pictures"]
        for viewer in viewers:
            counters = [c for c in viewer.counters if c is not None]
            assert counters == sorted(counters) and len(set(counters)) == len(counters)
    finally:
        for viewer in viewers:
            await viewer.close()


async def test_closing_the_stream_ends_every_viewer_and_the_encode_thread() -> None:
    async def send(message: Message) -> None:
        pass

    with loopback_candidates():
        stream = Stream(StreamViewers("closing", send, WhepEncoding()))
        stream.start()
        viewer = await join(stream)
        try:
            await wait_until(lambda: viewer.decoded >= 5, HANG_GUARD_S)
            await stream.stop()
            assert not stream.viewers.viewers
            await wait_until(
                lambda: not [t for t in threading.enumerate() if t.name.startswith("whep-closing")],
                HANG_GUARD_S,
            )
            await wait_until(lambda: viewer.pc.connectionState == "closed", HANG_GUARD_S)
        finally:
            await viewer.close()


async def test_an_audio_only_viewer_starts_no_encoder(stream: Stream) -> None:
    viewer = await join(stream, video=False)
    try:
        assert "m=video" not in viewer.answer and "m=audio" in viewer.answer
        stats = stream.viewers.encoder_stats()
        assert stats["viewers"] == 1 and stats["encoders"] == 0
    finally:
        await viewer.close()
