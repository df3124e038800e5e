"""RTP timestamps onto the stream's 90 kHz timeline: unwrapping, reordering, a shared origin."""

from __future__ import annotations

from ingest.webrtc.clock import WRAP, AvTimeline, RtpClock, SharedOrigin


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


def test_sender_reports_put_audio_where_the_video_of_the_same_instant_is() -> None:
    timeline = AvTimeline()
    ntp = 3_900_000_000 << 32  # seconds since 1900, 32.32 fixed point
    # At wall time T the sender's video clock read 1_000_000 and its audio clock 5_000.
    timeline.video_reports.on_report(ntp, 1_000_000)
    timeline.audio_reports.on_report(ntp, 5_000)
    assert timeline.video_pts(1_000_000, arrived_ns=0) == 0
    # Audio sampled 0.25 s after T, whatever its arrival: 22500 ticks after that video frame.
    assert timeline.audio_pts(5_000 + 12_000, arrived_ns=9_000_000_000) == 22_500
    assert timeline.audio_reports.wallclock(5_000 - 48_000) == 3_900_000_000 - 1.0


def test_without_sender_reports_audio_follows_its_arrival() -> None:
    timeline = AvTimeline()
    assert timeline.video_pts(10, arrived_ns=0) == 0
    assert timeline.audio_pts(99, arrived_ns=100_000_000) == 9_000
