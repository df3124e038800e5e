"""A codec's packet feed: numbered packets, waiting, and what a viewer that fell behind sees."""

from __future__ import annotations

import asyncio

import av
import pytest

from egress.whep.encoders import SharedVideoEncoder
from egress.whep.feed import PacketFeed
from egress.whep.tracks import ViewerVideoTrack


def feed(keep: int = 4) -> PacketFeed:
    encoder = SharedVideoEncoder(
        "H264", preset="superfast", bit_rate=500_000, level_idc=30, keyframe_min_interval_s=0.5
    )
    return PacketFeed(encoder, keep=keep)


def packet(key: bool) -> av.Packet:
    out = av.Packet(b"\x00\x00\x01\x65" if key else b"\x00\x00\x01\x41")
    out.is_keyframe = key
    return out


async def test_packets_come_in_order_and_waiting_ends_with_the_feed() -> None:
    f = feed()
    f.push([packet(True), packet(False)])
    assert (await f.next_after(0))[0] == 1
    assert (await f.next_after(1))[0] == 2
    waiter = asyncio.create_task(f.next_after(2))
    await asyncio.sleep(0)
    assert not waiter.done()
    f.push([packet(False)])
    assert (await waiter)[0] == 3
    f.close()
    with pytest.raises(EOFError):
        await f.next_after(3)


async def test_a_viewer_starts_at_a_keyframe_and_resumes_at_one_when_it_fell_behind() -> None:
    f = feed(keep=4)
    f.push([packet(True), packet(False)])
    track = ViewerVideoTrack(f)  # joins after packet 2: asks for a keyframe
    assert f.encoder.stats.keyframe_requests == 1
    f.push([packet(False), packet(True), packet(False)])
    first = await track.recv()
    assert first.is_keyframe and track.skipped == 0, "joining is not skipping"
    assert not (await track.recv()).is_keyframe
    f.push([packet(False)] * 5 + [packet(True)])  # 5 packets: more than the feed keeps
    resumed = await track.recv()
    assert resumed.is_keyframe
    assert f.encoder.stats.keyframe_requests == 2, "falling behind asks for a keyframe"
    assert track.skipped == 5 and track.sent == 3
