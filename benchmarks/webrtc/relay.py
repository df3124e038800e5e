"""The baseline: a bare aiortc WHIP -> WHEP relay in one process, no inference. The publisher's
track is received with aiortc's own jitter buffer and decoder and handed, through aiortc's
``MediaRelay``, to each viewer's sender, which encodes it with aiortc's own encoder.

python -m benchmarks.webrtc.relay --port N [--early-frames]
    (127.0.0.1 only; prints ``{"ready": port}``)

``--early-frames`` gives the relay's receiver the runner's complete-frame jitter buffer
(``ingest.webrtc.jitter``): the buffer's own effect, without the runner around it.

Routes: ``POST /whip`` (one publisher), ``POST /whep`` (viewers; 409 until the publisher's
track is there), ``DELETE /whip`` (closes every peer).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal

from aiohttp import web
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay

from benchmarks.webrtc.peers import loopback_candidates, prefer_h264
from ingest.webrtc.jitter import release_complete_frames

SDP = "application/sdp"


class Relay:
    """The relay's state: the publisher's video track and every peer connection."""

    def __init__(self, *, early_frames: bool = False) -> None:
        self.early_frames = early_frames
        self.relay = MediaRelay()
        self.video: MediaStreamTrack | None = None
        self.peers: list[RTCPeerConnection] = []

    async def whip(self, request: web.Request) -> web.Response:
        if self.video is not None:
            return web.json_response(
                {"error": "already publishing", "status_code": 409}, status=409
            )
        pc = RTCPeerConnection()
        self.peers.append(pc)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                self.video = track

        await pc.setRemoteDescription(RTCSessionDescription(await request.text(), "offer"))
        for transceiver in pc.getTransceivers():
            transceiver.direction = "recvonly"
            if self.early_frames and transceiver.kind == "video":
                release_complete_frames(transceiver.receiver, "relay")
        await pc.setLocalDescription(await pc.createAnswer())
        return web.Response(
            status=201,
            text=pc.localDescription.sdp,
            content_type=SDP,
            headers={"Location": "/whip"},
        )

    async def whep(self, request: web.Request) -> web.Response:
        if self.video is None:
            return web.json_response({"error": "no publisher yet", "status_code": 409}, status=409)
        pc = RTCPeerConnection()
        self.peers.append(pc)
        await pc.setRemoteDescription(RTCSessionDescription(await request.text(), "offer"))
        (transceiver,) = (t for t in pc.getTransceivers() if t.kind == "video")
        transceiver.sender.replaceTrack(self.relay.subscribe(self.video, buffered=False))
        transceiver.direction = "sendonly"
        prefer_h264(transceiver)
        await pc.setLocalDescription(await pc.createAnswer())
        return web.Response(status=201, text=pc.localDescription.sdp, content_type=SDP)

    async def delete(self, _request: web.Request) -> web.Response:
        await self.close()
        return web.json_response({"status": "closed"})

    async def close(self) -> None:
        peers, self.peers, self.video = self.peers, [], None
        for pc in peers:
            await pc.close()


async def serve(port: int, *, early_frames: bool) -> None:
    relay = Relay(early_frames=early_frames)
    app = web.Application()
    app.router.add_post("/whip", relay.whip)
    app.router.add_post("/whep", relay.whep)
    app.router.add_delete("/whip", relay.delete)
    runner = web.AppRunner(app)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        print(json.dumps({"ready": port}), flush=True)
        await stop.wait()
    finally:
        with contextlib.suppress(Exception):
            await relay.close()
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.webrtc.relay")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--early-frames", action="store_true")
    args = parser.parse_args()
    with loopback_candidates():
        asyncio.run(serve(args.port, early_frames=args.early_frames))


if __name__ == "__main__":
    main()
