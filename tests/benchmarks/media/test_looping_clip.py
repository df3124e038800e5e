"""The pre-encoded looping clip: what it replays across loop boundaries is a continuous,
decodable stream, checked with FFmpeg's own demuxer and decoder (PyAV), not with ours."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import av
import pytest

from benchmarks.latency.figures import unwrap_counter
from benchmarks.media.clip import TS_CLOCK, ClipSpec, read_frame_counter
from benchmarks.media.looping_clip import LoopingClip, shift_timestamps, timestamp_sites

SPEC = ClipSpec(width=320, height=240, fps=30)


@pytest.fixture(scope="module")
def clip() -> LoopingClip:
    return LoopingClip.encode(SPEC, 50)  # rounded up to two 30-frame segments


def _segments(clip: LoopingClip, frames: int) -> list[bytes]:
    """The stream's first ``frames`` frames cut into trickle segments as a sender cuts them."""
    segments: list[bytes] = []
    current: list[bytes] | None = None
    chunks = [c for i in range(frames) for c in clip.chunks_for(i)]
    chunks += clip.closing_after(frames - 1)
    for chunk in chunks:
        if chunk.first:
            current = []
        assert current is not None, "a chunk came before any segment opened"
        current.append(chunk.data)
        if chunk.last:
            segments.append(b"".join(current))
            current = None
    assert current is None, "the last segment was left open"
    return segments


def _decode(segment: bytes) -> list[tuple[int, int | None]]:
    """(pts, counter) of every picture of one segment, decoded by FFmpeg alone."""
    out = []
    with av.open(io.BytesIO(segment), format="mpegts") as container:
        for frame in container.decode(video=0):
            assert frame.pts is not None
            out.append((frame.pts, read_frame_counter(frame)))
    return out


def test_loop_is_whole_segments(clip: LoopingClip) -> None:
    assert clip.period == 60 and clip.segment_frames == 30
    assert clip.loop_ticks == 60 * TS_CLOCK // SPEC.fps


def test_replay_is_continuous_and_decodable_across_loop_boundaries(clip: LoopingClip) -> None:
    frames = clip.period * 2 + 45  # two loop boundaries, ending mid-segment
    segments = _segments(clip, frames)
    assert len(segments) == 6  # 30-frame segments, the last one 15 frames
    pictures = [p for segment in segments for p in _decode(segment)]
    assert len(pictures) == frames
    pts = [p for p, _ in pictures]
    steps = {b - a for a, b in itertools.pairwise(pts)}
    assert steps == {TS_CLOCK // SPEC.fps}  # one frame interval everywhere, loops included
    counters = [c for _, c in pictures]
    assert None not in counters
    # The counter repeats every loop; unwrapped with the loop's period it rises by one a frame.
    unwrapped = [unwrap_counter(c, i, clip.period) for i, c in enumerate(counters) if c is not None]
    assert unwrapped == list(range(frames))


def test_each_segment_opens_with_a_keyframe(clip: LoopingClip) -> None:
    for segment in _segments(clip, clip.period + 30):
        with av.open(io.BytesIO(segment), format="mpegts") as container:
            first = next(container.demux(video=0))
            assert first.is_keyframe


def test_shifting_moves_every_timestamp_and_keeps_the_rest(clip: LoopingClip) -> None:
    data = b"".join(c.data for c in clip.chunks_for(0))
    sites = timestamp_sites(data)
    assert sites, "the first frame carries a PTS and a PCR"
    delta = (1 << 33) - 1000  # wraps past 2^33
    shifted = shift_timestamps(data, sites, delta)
    assert len(shifted) == len(data)
    changed = {i for i, (a, b) in enumerate(zip(data, shifted, strict=True)) if a != b}
    covered = {at + k for at, _ in sites for k in range(6)}
    assert changed and changed <= covered
    assert shift_timestamps(shifted, sites, (1 << 33) - delta) == data


def test_a_saved_clip_loads_identically(clip: LoopingClip, tmp_path: Path) -> None:
    path = tmp_path / "clip.msgpack"
    clip.save(path)
    loaded = LoopingClip.load(path)
    assert loaded.spec == clip.spec and loaded.period == clip.period
    for index in (0, 29, 30, 59, 60, 61, 150):
        assert loaded.chunks_for(index) == clip.chunks_for(index)


def test_a_loop_longer_than_the_counter_is_refused() -> None:
    with pytest.raises(ValueError, match="at most 4096"):
        LoopingClip(SPEC, 1, [[(b"", True, True)]] * 4097, [])
