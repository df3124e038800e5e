"""The WHIP source's answer: the setting that picks the video jitter buffer reaches aiortc's
receiver (the media path itself is covered end to end in tests/e2e/test_webrtc.py)."""

from __future__ import annotations

import pytest
from aiortc import RTCPeerConnection
from aiortc.jitterbuffer import JitterBuffer

from benchmarks.media.clip import ClipSpec
from benchmarks.webrtc.peers import CounterSource, prefer_h264
from ingest.webrtc.jitter import CompleteFrameJitterBuffer
from ingest.webrtc.whip import WhipSource
from ipc.messages import PeerOffer


@pytest.mark.parametrize("early", [True, False])
async def test_the_video_receiver_gets_the_buffer_the_setting_asks_for(early: bool) -> None:
    publisher = RTCPeerConnection()
    source = WhipSource("stream-1", early_frames=early)
    try:
        prefer_h264(publisher.addTransceiver(CounterSource(ClipSpec()), direction="sendonly"))
        publisher.addTransceiver("audio", direction="sendonly")
        await publisher.setLocalDescription(await publisher.createOffer())
        offer = PeerOffer(
            stream_id="stream-1",
            peer_id="peer-1",
            request_id="r1",
            role="whip",
            sdp=publisher.localDescription.sdp,
        )
        answer = await source.answer(offer)
        assert answer.status == 201, answer.error
        assert source.pc is not None
        buffers = {
            t.kind: t.receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]
            for t in source.pc.getTransceivers()
        }
        assert isinstance(buffers["video"], CompleteFrameJitterBuffer) is early
        assert isinstance(buffers["video"], JitterBuffer)
        assert not isinstance(buffers["audio"], CompleteFrameJitterBuffer), "audio as aiortc has it"
    finally:
        await source.close()
        await publisher.close()
