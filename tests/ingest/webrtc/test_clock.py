"""RTP timestamps onto the stream's 90 kHz timeline: unwrapping, reordering, a shared origin."""

from __future__ import annotations

from ingest.webrtc.clock import WRAP, RtpClock, SharedOrigin


def test_video_pts_follow_rtp_across_the_wrap() -> None:
    clock = RtpClock(90_000, SharedOrigin())
    start = WRAP - 6_000
    assert clock.pts(start, arrived_ns=0) == 0
    assert clock.pts(start + 3_000, arrived_ns=0) == 3_000
    assert clock.pts((start + 6_000) % WRAP, arrived_ns=0) == 6_000  # wrapped to 0
    assert clock.pts((start + 9_000) % WRAP, arrived_ns=0) == 9_000
    assert clock.wraps == 1


def test_a_reordered_frame_goes_back_not_forward() -> None:
    clock = RtpClock(90_000, SharedOrigin())
    clock.pts(1_000_000, arrived_ns=0)
    clock.pts(1_006_000, arrived_ns=0)
    assert clock.pts(1_003_000, arrived_ns=0) == 3_000


def test_audio_and_video_share_the_origin_of_the_first_arrival() -> None:
    origin = SharedOrigin()
    video = RtpClock(90_000, origin)
    audio = RtpClock(48_000, origin)
    assert video.pts(123_456, arrived_ns=1_000_000_000) == 0
    # Audio first seen 0.5 s later: it starts 45000 ticks into the stream.
    assert audio.pts(777, arrived_ns=1_500_000_000) == 45_000
    assert audio.pts(777 + 48_000, arrived_ns=2_600_000_000) == 45_000 + 90_000
