"""The viewer's counter read-back on real encoded and decoded output, inverted or not."""

from __future__ import annotations

import time

import numpy as np
import pytest

from benchmarks.latency.sink import OutputSink
from benchmarks.media.clip import ClipSpec, video_rgb24, video_yuv420p
from benchmarks.media.live_ts import LiveTsEncoder

SPEC = ClipSpec(width=512, height=512, fps=30)
FRAMES = 45


def _output_bytes(indices: list[int], *, inverted: bool) -> list[list[bytes]]:
    """The clip as a runner would publish it (inverted in RGB when asked): MPEG-TS segment
    bytes, one list of chunks per segment."""
    encoder = LiveTsEncoder(frame_rate=SPEC.fps, segment_seconds=1.0)
    segments: list[list[bytes]] = []
    for index in indices:
        if inverted:
            chunks = encoder.video(
                255 - video_rgb24(SPEC, index), SPEC.pts(index), pixel_format="rgb24"
            )
        else:
            chunks = encoder.video(video_yuv420p(SPEC, index), SPEC.pts(index))
        for chunk in chunks:
            if chunk.first:
                segments.append([])
            if chunk.data:
                segments[-1].append(chunk.data)
    for chunk in encoder.close():
        if chunk.data:
            segments[-1].append(chunk.data)
    return segments


def _read(sink: OutputSink, segments: list[list[bytes]]) -> None:
    for segment in segments:
        sink.ingest_frames(sink.decoder.new_segment(), time.monotonic_ns())
        for data in segment:
            arrived = time.monotonic_ns()
            sink.ingest_frames(sink.decoder.feed(data) + sink.decoder.flush_pending(), arrived)
    sink.ingest_frames(sink.decoder.close(), time.monotonic_ns())


def _sink(inverted: bool) -> OutputSink:
    # The subscriber is never started: bytes are fed straight into the sink's decoder.
    return OutputSink("s", "http://127.0.0.1:9/ai/trickle/none", fps=30, inverted=inverted)


@pytest.mark.parametrize("inverted", [False, True])
def test_every_frame_is_identified_from_its_pixels(inverted: bool) -> None:
    sink = _sink(inverted)
    _read(sink, _output_bytes(list(range(FRAMES)), inverted=inverted))
    record = sink.record
    assert sorted(record.frames) == list(range(FRAMES))
    assert (record.unreadable, record.duplicates, record.out_of_order) == (0, 0, 0)
    assert sink.highest_index == FRAMES - 1
    for arrived, decoded in record.frames.values():
        assert decoded >= arrived > 0


def test_reading_inverted_output_as_plain_gives_other_numbers() -> None:
    sink = _sink(inverted=False)
    _read(sink, _output_bytes(list(range(10)), inverted=True))
    assert sorted(sink.record.frames) != list(range(10))
    assert max(sink.record.frames) == 4095  # the complement of counter 0


def test_gaps_repeats_and_reordering_are_counted() -> None:
    sink = _sink(inverted=True)
    decoded = []
    for segment in _output_bytes([0, 1, 2, 5, 6, 7, 9], inverted=True):  # 3, 4, 8 lost
        decoded += sink.decoder.new_segment()
        for data in segment:
            decoded += sink.decoder.feed(data) + sink.decoder.flush_pending()
    decoded += sink.decoder.close()
    now = time.monotonic_ns()
    sink.ingest_frames(decoded, now)
    sink.ingest_frames(decoded[4:5], now)  # frame 6 shown again
    sink.ingest_frames(decoded[1:2], now)  # frame 1 again, after 9: a repeat, not a new frame
    record = sink.record
    assert sorted(record.frames) == [0, 1, 2, 5, 6, 7, 9]
    assert record.duplicates == 2
    assert record.decoded == 9


def test_counter_survives_the_wrap_with_the_clock() -> None:
    sink = _sink(inverted=False)
    # Pretend frame 0 was due 4096 frames ago: the counter reads 0 again for frame 4096.
    sink.t0_ns = time.monotonic_ns() - int(4096 / 30 * 1e9)
    _read(sink, _output_bytes([0, 1, 2], inverted=False))
    assert sorted(sink.record.frames) == [4096, 4097, 4098]
    assert np.all(np.diff(sorted(sink.record.frames)) == 1)
