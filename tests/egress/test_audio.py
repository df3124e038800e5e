"""Audio on the egress side: decoding relayed packets and holding them for the video."""

from __future__ import annotations

from fractions import Fraction

from benchmarks.media.clip import ClipSpec
from egress.audio import AudioInterleaver, StreamAudioDecoder
from ipc.messages import StreamAudio
from tests.egress.stream_helpers import source_audio

SPEC = ClipSpec(width=256, height=192, audio_channels=2)


def test_interleaver_releases_by_pts_and_by_age() -> None:
    queue = AudioInterleaver(max_packets=10, max_wait_s=0.5)
    for i in range(5):
        queue.push(1_000 * i, bytes([i]), now_ns=0)
    assert queue.due(2_500, now_ns=1) == [(0, b"\x00"), (1_000, b"\x01"), (2_000, b"\x02")]
    assert queue.due(2_500, now_ns=1) == []
    assert queue.due(None, now_ns=499_000_000) == []  # not old enough yet
    assert queue.due(None, now_ns=500_000_000) == [(3_000, b"\x03"), (4_000, b"\x04")]


def test_interleaver_is_bounded_and_counts_what_it_drops() -> None:
    queue = AudioInterleaver(max_packets=3)
    for i in range(5):
        queue.push(i, b"x", now_ns=0)
    assert len(queue) == 3 and queue.dropped == 2
    assert [pts for pts, _ in queue.drain()] == [2, 3, 4] and len(queue) == 0
    for i in range(4):
        queue.push(i * 10, b"x", now_ns=0)
    assert queue.discard_before(25) == 2 and [p for p, _ in queue.due(100)] == [30]


def test_decoder_turns_aac_and_opus_packets_into_frames_on_the_90khz_clock() -> None:
    for codec in ("aac", "opus"):
        decoder = StreamAudioDecoder(label="t")
        messages = source_audio(SPEC, 15, codec)
        frames = [f for m in messages for f in decoder.decode(m)]
        assert frames and decoder.errors == 0
        assert {f.time_base for f in frames} == {Fraction(1, 90_000)}
        assert frames[0].pts == messages[0].pts
        assert {f.layout.nb_channels for f in frames} == {2}
        seconds = sum(f.samples / f.sample_rate for f in frames)
        assert 0.4 < seconds < 0.7


def test_decoder_counts_garbage_and_goes_on() -> None:
    decoder = StreamAudioDecoder()
    good = source_audio(SPEC, 3, "aac")
    bad = StreamAudio(stream_id="", codec="aac", pts=0, data=b"\xff\xf1\x50\x80" + bytes(40))
    assert decoder.decode(bad) == []
    assert decoder.errors == 1
    assert sum(len(decoder.decode(m)) for m in good) >= len(good) - 1
