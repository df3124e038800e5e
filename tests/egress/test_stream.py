"""The egress stream service in-process: frames written into a real shared-memory ring (as infer
writes them), published through a real trickle server on loopback, read back by a trickle
subscriber and decoded by the ingest decoder.

The stream's ``send`` (its control channel to the parent) is a recorder (``SentMessages``), and
audio packets are handed to ``on_audio`` as the worker does with the parent's ``StreamAudio``."""

from __future__ import annotations

import asyncio
import itertools

import av
import numpy as np
import pytest
from av.video.reformatter import VideoReformatter

from benchmarks.media.clip import ClipSpec, read_counter, tone_phase_error
from egress.stream import EgressStream, video_frame_of
from ingest.decode import split_ts_opus
from ingest.tsdemux import TsDemuxer
from ipc.colour import Colour
from ipc.frame import FrameFlag
from ipc.messages import EgressConfig, StreamAudio, StreamState, StreamStats
from tests import colour_patches as patches
from tests.egress.stream_helpers import (
    read_output,
    source_audio,
    wait_until,
    write_frame,
)
from tests.ingest.stream_helpers import SentMessages, owned_ring, ring_spec, trickle_channel

SPEC = ClipSpec(width=256, height=192, audio_channels=1)
TONE_SPEC = ClipSpec(width=256, height=192, audio_channels=1, tone_hz=100.0)
FRAMES = 60
SEGMENT_SECONDS = 0.5
FRAME_INTERVAL = 1 / 60  # twice real time: the test stays short


def egress_config(spec, url: str = "", **changes: object) -> EgressConfig:  # type: ignore[no-untyped-def]
    options = {"segment_seconds": SEGMENT_SECONDS, **changes}
    return EgressConfig(ring=spec, publish_url=url, **options)  # type: ignore[arg-type]


async def feed(
    stream: EgressStream,
    writer,  # type: ignore[no-untyped-def]
    spec: ClipSpec,
    frames: range,
    audio: list[StreamAudio],
    *,
    audio_lead: float = 0.1,
    last_flags: int = 0,
) -> None:
    """Frames at ``FRAME_INTERVAL``; each audio packet sent ``audio_lead`` seconds (of media
    time) before the frame it plays with, as audio overtakes the inference delay."""
    pending = list(audio)
    for index in frames:
        due = spec.pts(index) + audio_lead * 90_000
        while pending and pending[0].pts <= due:
            stream.on_audio(pending.pop(0))
        flags = last_flags if index == frames[-1] else 0
        write_frame(writer, spec, index, flags=flags)
        await asyncio.sleep(FRAME_INTERVAL)
    for message in pending:
        stream.on_audio(message)


async def test_frames_and_aac_audio_are_published_in_segments_in_sync() -> None:
    spec = ring_spec("out")
    sent = SentMessages()
    audio = source_audio(TONE_SPEC, FRAMES, "aac")
    async with owned_ring(spec) as ring, trickle_channel("out") as (_server, _name, url):
        stream = EgressStream("out-1", egress_config(spec, url, stats_interval_s=0.2), sent.send)
        reader = asyncio.create_task(read_output(url))
        stream.start()
        try:
            with ring.writer() as writer:
                await feed(stream, writer, TONE_SPEC, range(FRAMES), audio)
            await wait_until(lambda: stream.stats.frames_out == FRAMES)
        finally:
            await stream.stop()  # ends the last segment and deletes the channel
        output = await asyncio.wait_for(reader, 60)

    video = output.video
    assert [read_counter(f.array, "yuv420p") for f in video] == list(range(FRAMES))  # type: ignore[arg-type]
    assert [f.pts for f in video] == [TONE_SPEC.pts(i) for i in range(FRAMES)]
    # One keyframe per segment, and every segment opens with it.
    per_segment = int(SEGMENT_SECONDS * TONE_SPEC.fps)
    assert [f.segment for f in video if f.keyframe] == list(range(FRAMES // per_segment))
    assert [video[i].keyframe for i in range(0, FRAMES, per_segment)] == [True] * 4
    assert output.stats["video_skipped_before_keyframe"] == 0
    assert output.stats["demux_cc_errors"] == 0

    # Audio: AAC in, Opus out, covering the clip and in sync within one frame.
    assert output.audio and {a.sample_rate for a in output.audio} == {48_000}
    frame_s = 1 / TONE_SPEC.fps
    first_audio_s = output.audio[0].pts / 90_000
    assert abs(first_audio_s - TONE_SPEC.pts(0) / 90_000) <= frame_s
    audio_s = sum(a.samples for a in output.audio) / 48_000
    assert audio_s == pytest.approx(FRAMES * frame_s, abs=frame_s + 0.05)
    errors = [
        tone_phase_error(a.frame.to_ndarray(), TONE_SPEC, a.pts / 90_000)
        for a in output.audio[3:-1]  # the last one is padded with silence
    ]
    assert max(errors) < 0.001
    for segment in output.segments:  # audio in every segment, not only the first
        demuxer = TsDemuxer()
        kinds = {p.stream.kind for p in demuxer.feed(segment) + demuxer.flush()}
        assert kinds == {"video", "audio"} or not segment

    states = [m.state for m in sent.of(StreamState)]
    assert states == ["processing"]  # stopped by the parent: no state of its own
    report = sent.of(StreamStats)[-1]
    assert report.frames_out == FRAMES and report.worker == "egress"
    stages: dict[str, int] = {}
    for stats in sent.of(StreamStats):
        for name, value in stats.stages.items():
            stages[name] = stages.get(name, 0) + value.count
    expected = {"decode", "ingest_write", "ingest_to_infer", "infer", "infer_to_egress"}
    expected |= {"encode", "publish", "end_to_end"}
    assert set(stages) == expected and set(stages.values()) == {FRAMES}
    assert report.dropped["ring_overwrite"] == 0


async def test_opus_audio_passes_through_untouched() -> None:
    spec = ring_spec("out")
    audio = source_audio(SPEC, 30, "opus")
    async with owned_ring(spec) as ring, trickle_channel("out") as (_server, _name, url):
        stream = EgressStream("opus-1", egress_config(spec, url), SentMessages().send)
        reader = asyncio.create_task(read_output(url))
        stream.start()
        try:
            with ring.writer() as writer:
                await feed(stream, writer, SPEC, range(30), audio)
            await wait_until(lambda: stream.stats.frames_out == 30)
        finally:
            await stream.stop()
        output = await asyncio.wait_for(reader, 60)
    published = []
    demuxer = TsDemuxer()
    for segment in output.segments:
        demuxer.new_segment()
        for packet in demuxer.feed(segment) + demuxer.flush():
            if packet.stream.kind == "audio":
                assert packet.stream.channels == 1
                published += [(packet.pts, data) for data, _, _ in split_ts_opus(packet.data)]
    sent_packets = [(a.pts, a.data) for a in audio if a.pts >= SPEC.pts(0)]
    assert published == sent_packets


async def test_picture_size_change_starts_a_new_segment_with_a_keyframe() -> None:
    spec = ring_spec("out", width=320, height=240)
    large = ClipSpec(width=320, height=240)
    async with owned_ring(spec) as ring, trickle_channel("out") as (_server, _name, url):
        stream = EgressStream(
            "size-1",
            egress_config(spec, url, audio=False, segment_seconds=5.0),
            SentMessages().send,
        )
        reader = asyncio.create_task(read_output(url))
        stream.start()
        try:
            with ring.writer() as writer:
                for index in range(20):
                    write_frame(writer, SPEC if index < 10 else large, index)
                    await asyncio.sleep(FRAME_INTERVAL)
            await wait_until(lambda: stream.stats.frames_out == 20)
        finally:
            await stream.stop()
        output = await asyncio.wait_for(reader, 60)
    assert [(f.width, f.height) for f in output.video] == [(256, 192)] * 10 + [(320, 240)] * 10
    assert [i for i, f in enumerate(output.video) if f.keyframe] == [0, 10]
    assert [f.segment for f in output.video] == [0] * 10 + [1] * 10
    assert [read_counter(f.array, "yuv420p") for f in output.video] == list(range(20))  # type: ignore[arg-type]


async def test_deleted_publish_channel_ends_the_stream() -> None:
    spec = ring_spec("out")
    sent = SentMessages()
    async with owned_ring(spec) as ring, trickle_channel("out") as (server, name, url):
        stream = EgressStream("gone-1", egress_config(spec, url, audio=False), sent.send)
        stream.start()
        try:
            with ring.writer() as writer:
                for index in itertools.count():
                    write_frame(writer, SPEC, index)
                    await asyncio.sleep(FRAME_INTERVAL)
                    if index == 5:
                        server.close_channel(name)
                    if not stream.running or index > 600:
                        break
            ended = await sent.wait_for(StreamState, lambda m: m.state != "processing")
        finally:
            await stream.stop()
    assert ended.state == "ended" and ended.worker == "egress"
    assert sent.of(StreamStats), "a final report is sent before the state"


async def test_overwritten_frames_are_reported_and_reading_resumes_after_them() -> None:
    spec = ring_spec("out", slots=4)
    sent = SentMessages()
    async with owned_ring(spec) as ring, trickle_channel("out") as (_server, _name, url):
        with ring.writer() as writer:
            for index in range(10):  # nobody reads yet: six of them are overwritten
                write_frame(writer, SPEC, index)
            stream = EgressStream(
                "behind-1", egress_config(spec, url, audio=False, stats_interval_s=0.1), sent.send
            )
            reader = asyncio.create_task(read_output(url))
            stream.start()
            try:
                report = await sent.wait_for(StreamStats, lambda m: m.frames_out == 4)
            finally:
                await stream.stop()
            output = await asyncio.wait_for(reader, 60)
    assert report.dropped["ring_overwrite"] == 6
    assert [read_counter(f.array, "yuv420p") for f in output.video] == [6, 7, 8, 9]  # type: ignore[arg-type]


async def test_audio_keeps_flowing_when_the_video_stops() -> None:
    spec = ring_spec("out")
    audio = source_audio(SPEC, 60, "opus")
    async with owned_ring(spec) as ring, trickle_channel("out") as (_server, _name, url):
        stream = EgressStream("stall-1", egress_config(spec, url), SentMessages().send)
        reader = asyncio.create_task(read_output(url))
        stream.start()
        try:
            with ring.writer() as writer:
                await feed(stream, writer, SPEC, range(10), audio[:5])
                await wait_until(lambda: stream.stats.frames_out == 10)
                for message in audio[5:]:  # two seconds of audio, no more pictures
                    stream.on_audio(message)
                # The interleaver stops waiting for pictures and muxes the audio on its own: wait
                # until it has muxed the packets up to 1.2 s past the last picture.
                wanted_pts = SPEC.pts(10) + 108_000
                wanted = sum(1 for m in audio if m.pts <= wanted_pts)
                assert stream.live is not None
                live = stream.live
                await wait_until(
                    lambda: live.muxer is not None and live.muxer.stats.audio_packets >= wanted
                )
        finally:
            await stream.stop()
        output = await asyncio.wait_for(reader, 60)
    assert len(output.video) == 10
    last_audio_s = output.audio[-1].pts / 90_000
    assert last_audio_s > SPEC.pts(10) / 90_000 + 1.0


async def test_end_of_stream_frame_completes_the_live_output() -> None:
    spec = ring_spec("out")
    sent = SentMessages()
    async with owned_ring(spec) as ring, trickle_channel("out") as (server, name, url):
        stream = EgressStream("eos-1", egress_config(spec, url, audio=False), sent.send)
        reader = asyncio.create_task(read_output(url, until_frames=12))
        stream.start()
        try:
            with ring.writer() as writer:
                for index in range(12):
                    flags = FrameFlag.END_OF_STREAM if index == 11 else 0
                    write_frame(writer, SPEC, index, flags=flags)
                    await asyncio.sleep(FRAME_INTERVAL)
            done = await sent.wait_for(StreamState, lambda m: m.state != "processing")
            output = await asyncio.wait_for(reader, 60)
        finally:
            await stream.stop()
        assert server.channel(name) is not None  # completed: the channel is left to its owner
    assert done.state == "completed" and not stream.running
    assert len(output.video) == 12


def test_stream_needs_an_output() -> None:
    with pytest.raises(ValueError, match="publish_url, output_path or whep"):
        EgressStream("x", EgressConfig(ring=ring_spec("out")), SentMessages().send)


@pytest.mark.parametrize("pixel_format", ["yuv420p", "nv12"])
@pytest.mark.parametrize(("width", "height"), [(64, 48), (63, 47)])
async def test_ring_views_become_encoder_frames_plane_by_plane(
    pixel_format: str, width: int, height: int
) -> None:
    spec = ring_spec("out", width=64, height=48, slots=2, pixel_format=pixel_format)
    rng = np.random.default_rng(1)
    async with owned_ring(spec) as ring:
        with ring.writer() as writer, ring.reader() as reader:
            with writer.reserve(width, height, pts=1, time_base=(1, 90_000)) as slot:
                for plane in slot.planes:
                    plane[...] = rng.integers(0, 256, plane.shape, dtype=np.uint8)
            view = reader.read(copy=False)
            assert view is not None
            with view:
                picture = video_frame_of(view)
                sources = [p.copy() for p in view.planes]
    expected = (width - width % 2, height - height % 2)
    assert (picture.width, picture.height, picture.format.name) == (*expected, pixel_format)
    for source, out_plane in zip(sources, picture.planes, strict=True):
        rows = source.reshape(source.shape[0], -1)
        got = np.frombuffer(memoryview(out_plane), np.uint8).reshape(-1, out_plane.line_size)
        h, w = got.shape[0], out_plane.width * (rows.shape[1] // source.shape[1])
        assert np.array_equal(got[:h, :w], rows[:h, :w])


@pytest.mark.parametrize("colour", patches.COLOURS_UNDER_TEST, ids=patches.colour_id)
async def test_rgb24_frames_are_converted_by_swscale_within_the_bound(colour: Colour) -> None:
    """An rgb24 ring (inference on the CPU): swscale writes yuv420p with the frame's matrix and
    range, within 2 levels of the float reference on flat patches, and tags the picture."""
    rgb = patches.patches_rgb()
    spec = ring_spec("out", width=patches.WIDTH, height=patches.HEIGHT, pixel_format="rgb24")
    async with owned_ring(spec) as ring:
        with ring.writer() as writer, ring.reader() as reader:
            writer.write(rgb, pts=1, time_base=(1, 90_000), flags=colour.to_flags())
            view = reader.read(copy=False)
            assert view is not None
            with view:
                picture = video_frame_of(view, VideoReformatter())
    assert (picture.format.name, picture.width, picture.height) == (
        "yuv420p",
        patches.WIDTH,
        patches.HEIGHT,
    )
    assert (picture.colorspace, picture.color_range) == (colour.matrix, colour.range)
    got = patches.yuv_planes(picture.to_ndarray(), patches.WIDTH, patches.HEIGHT)
    want = patches.yuv_planes(patches.reference_yuv420p(rgb, colour), patches.WIDTH, patches.HEIGHT)
    half = patches.PATCH // 2
    errors = [
        np.abs(patches.interiors(g, half, 2) - patches.interiors(w, half, 2)).max()
        if index
        else np.abs(patches.interiors(g) - patches.interiors(w)).max()
        for index, (g, w) in enumerate(zip(got, want, strict=True))
    ]
    assert max(errors) <= patches.TOLERANCE, errors


@pytest.mark.parametrize(("width", "height"), [(17, 13), (642, 362), (641, 361)])
async def test_odd_sized_rgb24_frames_are_trimmed_to_even(width: int, height: int) -> None:
    rgb = np.random.default_rng(5).integers(0, 256, (height, width, 3), dtype=np.uint8)
    spec = ring_spec("out", width=width, height=height, pixel_format="rgb24")
    async with owned_ring(spec) as ring:
        with ring.writer() as writer, ring.reader() as reader:
            writer.write(rgb, pts=1, time_base=(1, 90_000))
            view = reader.read(copy=False)
            assert view is not None
            with view:
                picture = video_frame_of(view)
    even = (width - width % 2, height - height % 2)
    assert (picture.format.name, picture.width, picture.height) == ("yuv420p", *even)
    crop = np.ascontiguousarray(rgb[: even[1], : even[0]])
    want = av.VideoFrame.from_ndarray(crop, format="rgb24").reformat(
        format="yuv420p", dst_colorspace=5, dst_color_range=1
    )
    assert np.array_equal(picture.to_ndarray(), want.to_ndarray())


async def test_late_audio_opens_a_new_segment_with_an_audio_track() -> None:
    spec = ring_spec("out")
    audio = source_audio(SPEC, 30, "opus")
    async with owned_ring(spec) as ring, trickle_channel("out") as (_server, _name, url):
        stream = EgressStream("late-audio-1", egress_config(spec, url), SentMessages().send)
        reader = asyncio.create_task(read_output(url))
        stream.start()
        try:
            with ring.writer() as writer:
                for index in range(10):  # no audio yet: the output starts without a track
                    write_frame(writer, SPEC, index)
                    await asyncio.sleep(FRAME_INTERVAL)
                await wait_until(lambda: stream.stats.frames_out == 10)
                late = [a for a in audio if a.pts >= SPEC.pts(10)]
                await feed(stream, writer, SPEC, range(10, 30), late)
            await wait_until(lambda: stream.stats.frames_out == 30)
        finally:
            await stream.stop()
        output = await asyncio.wait_for(reader, 60)
    assert [read_counter(f.array, "yuv420p") for f in output.video] == list(range(30))  # type: ignore[arg-type]
    assert output.video[0].keyframe and output.video[10].keyframe
    assert output.video[10].segment == output.video[9].segment + 1
    kinds = []
    for segment in output.segments:
        demuxer = TsDemuxer()
        kinds.append({p.stream.kind for p in demuxer.feed(segment) + demuxer.flush()})
    assert kinds[0] == {"video"} and {"video", "audio"} in kinds[1:]
    assert output.audio and output.audio[0].pts >= SPEC.pts(10)
    assert stream.live is not None and stream.live.audio_tracks_added == 1
