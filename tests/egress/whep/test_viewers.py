"""WHEP viewers' pieces without a network: keyframe throttling and the newest-picture source."""

from __future__ import annotations

import asyncio

import av
import pytest

from egress.whep.source import StreamPictures
from egress.whep.viewers import throttle_keyframes


class Sender:
    """Stands in for ``RTCRtpSender``: only its keyframe request is involved."""

    def __init__(self) -> None:
        self.forced = 0

    def _send_keyframe(self) -> None:
        self.forced += 1


async def test_keyframe_requests_are_throttled(monkeypatch: pytest.MonkeyPatch) -> None:
    sender = Sender()
    now = [100.0]
    monkeypatch.setattr("egress.whep.viewers.time.monotonic", lambda: now[0])
    counters = throttle_keyframes(sender, 1.0)  # type: ignore[arg-type]
    for _ in range(4):  # OBS asks every 500 ms while it waits
        sender._send_keyframe()
        now[0] += 0.5
    assert counters == {"keyframe_requests": 4, "keyframes_forced": 2}
    assert sender.forced == 2


async def test_a_slow_viewer_gets_the_newest_picture_and_counts_what_it_skipped() -> None:
    pictures = StreamPictures()
    frames = [av.VideoFrame(16, 16, "yuv420p") for _ in range(3)]
    for i, frame in enumerate(frames):
        pictures.publish(frame, source_pts=i * 3000)
    seq, picture = await pictures.next_after(0)
    assert seq == 3 and picture is frames[2]
    assert [f.pts for f in frames] == sorted(f.pts for f in frames)  # one clock, increasing
    waiter = asyncio.create_task(pictures.next_after(3))
    await asyncio.sleep(0)
    assert not waiter.done()
    pictures.close()
    with pytest.raises(EOFError):
        await waiter
