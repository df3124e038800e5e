"""The shared WHEP encoders on their own: keyframes on request (throttled), SPS/PPS before every
IDR, size changes and VP8; decoded back with FFmpeg's decoders."""

from __future__ import annotations

import av
import numpy as np

from benchmarks.media.clip import ClipSpec, read_frame_counter, video_frame
from egress.whep.encoders import KeyframeThrottle, SharedVideoEncoder, VideoCodec
from egress.whep.h264 import constrained_baseline_id, nal_type, nal_units, sps_profile_level_id

SPEC = ClipSpec(width=320, height=240, fps=30)


def encoder(codec: VideoCodec = "H264", *, interval: float = 0.5) -> SharedVideoEncoder:
    return SharedVideoEncoder(
        codec, preset="superfast", bit_rate=800_000, level_idc=21, keyframe_min_interval_s=interval
    )


def picture(index: int, spec: ClipSpec = SPEC) -> av.VideoFrame:
    frame = video_frame(spec, index)
    frame.pts = index * 3000
    return frame


def test_a_request_inside_the_window_waits_for_its_end() -> None:
    now = [10.0]
    throttle = KeyframeThrottle(0.5, clock=lambda: now[0])
    assert not throttle.due()
    throttle.request()
    assert throttle.due()
    throttle.keyframe_sent()
    throttle.request()
    now[0] += 0.2
    assert not throttle.due(), "inside the window"
    now[0] += 0.3
    assert throttle.due(), "kept, and honoured when the window ends"
    throttle.keyframe_sent()
    assert not throttle.due()


def test_h264_idrs_come_on_request_with_sps_and_pps_and_decode() -> None:
    shared = encoder(interval=0.0)
    decoder = av.CodecContext.create("h264", "r")
    keyframes = []
    for i in range(12):
        if i in (5, 9):
            shared.request_keyframe()
        for packet in shared.encode(picture(i)):
            assert packet.time_base is not None and packet.pts == i * 3000
            data = bytes(packet)
            types = [nal_type(n) for n in nal_units(data)]
            if 5 in types:
                keyframes.append(i)
                assert types.index(7) < types.index(8) < types.index(5)
                assert sps_profile_level_id(data) == constrained_baseline_id(21)
            [decoded] = decoder.decode(av.Packet(data))
            assert read_frame_counter(decoded) == i
    assert keyframes == [0, 5, 9]
    assert shared.stats.frames == 12 and shared.stats.keyframes_forced == 2
    assert shared.stats.opened == 1


def test_throttled_requests_give_one_idr_per_window() -> None:
    shared = encoder(interval=3600.0)  # nothing after the first keyframe within the test
    keyframes = 0
    for i in range(10):
        shared.request_keyframe()
        keyframes += sum(p.is_keyframe for p in shared.encode(picture(i)))
    assert keyframes == 1 and shared.stats.keyframe_requests == 10


def test_a_new_size_reopens_the_encoder_at_a_keyframe_and_odd_sizes_are_trimmed() -> None:
    shared = encoder()
    shared.encode(picture(0))
    odd = av.VideoFrame.from_ndarray(np.full((121, 161, 3), 200, np.uint8), format="rgb24")
    odd.pts = 3000
    [packet] = shared.encode(odd)
    assert packet.is_keyframe and shared.stats.opened == 2
    [decoded] = av.CodecContext.create("h264", "r").decode(av.Packet(bytes(packet)))
    assert (decoded.width, decoded.height) == (160, 120)


def test_vp8_is_shared_too_and_keyframes_on_request() -> None:
    shared = encoder("VP8", interval=0.0)
    decoder = av.CodecContext.create("vp8", "r")
    keyframes = []
    for i in range(8):
        if i == 4:
            shared.request_keyframe()
        source = picture(i)
        for packet in shared.encode(source):
            if packet.is_keyframe:
                keyframes.append(i)
            [decoded] = decoder.decode(av.Packet(bytes(packet)))
            error = np.abs(
                decoded.to_ndarray(format="gray").astype(int)
                - video_frame(SPEC, i).to_ndarray(format="gray").astype(int)
            ).mean()
            assert error < 10
    assert keyframes == [0, 4]
