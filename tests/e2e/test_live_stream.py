"""A live stream end to end: a clip published in real time to the stand-in's input channel,
through the runner's ingest, infer and egress worker processes, read back from the output
channel and checked frame by frame (cases S4 and S6 of the BYOC conformance list)."""

from __future__ import annotations

import itertools
import time

import numpy as np

from benchmarks.media.clip import counter_block_size, tone_phase_error
from tests.byoc.harness import Env
from tests.e2e.conftest import (
    FRAME_S,
    INVERT,
    SPEC,
    EventLog,
    LiveSource,
    OutputReader,
    expected_luma,
    live_runner,
    start_stream,
)

FRAMES = 90  # 3 s at 30 fps


def audio_end_s(reader: OutputReader) -> float | None:
    """Where the output's audio timeline ends, in seconds of the clip's timeline (mapped through
    the first readable picture's pts); ``None`` before a picture and audio came out."""
    pictures = [f for f in reader.frames if f.counter is not None]
    if not pictures or not reader.audio:
        return None
    video_shift = pictures[0].pts - SPEC.pts(pictures[0].counter)
    last = reader.audio[-1]
    return (last.pts - video_shift) / 90_000 + last.samples / last.sample_rate


async def test_invert_stream_frame_by_frame_with_audio_in_sync(env: Env) -> None:
    urls = await start_stream(env, "live1", {"workflow": INVERT})
    assert urls is not None
    reader = OutputReader(urls.subscribe).start()
    events = EventLog(urls.events)
    source = LiveSource(urls.publish)
    try:
        source.start(FRAMES)
        sent = (await source.wait()).sent
        await reader.wait_for(lambda r: FRAMES - 1 in r.counters(), timeout=60)
        # The clip's last audio can leave a moment after its last picture (a loaded machine
        # spreads them over two output segments): wait for the audio timeline to reach the clip's
        # end, so a lost tail fails at the guard rather than racing the reader's close.
        clip_end = SPEC.pts(FRAMES) / 90_000
        await reader.wait_for(
            lambda r: (end := audio_end_s(r)) is not None and end > clip_end - FRAME_S, timeout=60
        )
        # Figures reach the events periodically: wait for one, stamped from now on, that
        # accounts for every frame that did not come out (a wrong count fails at the guard).
        missing = len(sent) - len(set(reader.counters()))
        now_ms = time.time() * 1000
        final = await events.until(
            lambda e: e["timestamp"] > now_ms and missing <= e["frames_dropped"], timeout=60
        )
    finally:
        await source.stop()
        await reader.close()
        await events.close()

    frames = [f for f in reader.frames if f.counter is not None]
    counters = reader.counters()
    assert len(frames) == len(reader.frames), "every output picture carries a readable counter"
    assert all(f.inverted for f in frames), "the invert workflow inverted every picture"
    assert all(b > a for a, b in itertools.pairwise(counters)), counters
    assert set(counters) <= set(sent)
    missing = len(sent) - len(set(counters))
    assert missing <= final["frames_dropped"], (missing, final)
    pts = [f.pts for f in reader.frames]
    assert all(b > a for a, b in itertools.pairwise(pts))

    # Pixels: the counter band (grey blocks) and the whole picture are the inverted source.
    b = counter_block_size(SPEC.width)
    for f in frames:
        assert f.counter is not None
        want = expected_luma(f.counter, inverted=True)
        band = np.abs(f.luma[: 2 * b].astype(np.int16) - want[: 2 * b]).mean()
        whole = abs(float(f.luma.mean()) - float(want.mean()))
        assert band < 6 and whole < 12, (f.counter, band, whole)

    # Audio: present, covering most of the clip (a live output may open its audio track a
    # segment late), and in sync with the video within one frame: the audio timeline ends where
    # the clip's last picture ends (coarse) and the tone's phase matches the audio timestamps
    # everywhere (fine, modulo one tone period).
    assert reader.audio, "no audio in the output"
    rate = reader.audio[0].sample_rate
    assert sum(a.samples for a in reader.audio) / rate > 0.6 * FRAMES / SPEC.fps
    video_shift = frames[0].pts - SPEC.pts(counters[0])  # output vs clip timeline
    audio_end = audio_end_s(reader)
    assert audio_end is not None and abs(audio_end - clip_end) < FRAME_S, (audio_end, clip_end)
    samples = np.concatenate([a.frame.to_ndarray()[0] for a in reader.audio[1:]])
    first_time = (reader.audio[1].pts - video_shift) / 90_000
    assert tone_phase_error(samples, SPEC, first_time) < 0.001


async def test_output_bitrate_stream_keeps_its_pictures_and_timestamps() -> None:
    # --output-bitrate through the real workers: libx264 once took the 90 kHz time base for the
    # frame rate and sent pictures too grey to read a counter from.
    async with live_runner(output_bitrate=500_000) as env:
        urls = await start_stream(env, "live-bitrate", {"workflow": INVERT})
        assert urls is not None
        reader = OutputReader(urls.subscribe).start()
        source = LiveSource(urls.publish)
        try:
            source.start(FRAMES)
            await source.wait()
            await reader.wait_for(lambda r: FRAMES - 1 in r.counters(), timeout=60)
        finally:
            await source.stop()
            await reader.close()
    frames = reader.frames
    assert frames and all(f.counter is not None and f.inverted for f in frames)
    # The output keeps the input's spacing (one 30 fps frame) wherever no frame was dropped.
    for a, b in itertools.pairwise(frames):
        assert a.counter is not None and b.counter is not None
        assert b.pts - a.pts == SPEC.pts(b.counter) - SPEC.pts(a.counter), (a, b)
    b = counter_block_size(SPEC.width)
    for f in frames:
        assert f.counter is not None
        want = expected_luma(f.counter, inverted=True)
        band = np.abs(f.luma[: 2 * b].astype(np.int16) - want[: 2 * b]).mean()
        whole = abs(float(f.luma.mean()) - float(want.mean()))
        assert band < 6 and whole < 12, (f.counter, band, whole)
