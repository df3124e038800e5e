"""Processed clips written as MP4: through the egress stream from a real ring (the stream's
control channel is a recorder, ``SentMessages``), and the writer on its own; every file is read
back with PyAV (FFmpeg's demuxer and decoders)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import av
import pytest

from benchmarks.media.clip import ClipSpec, read_frame_counter, video_frame
from egress.colour import tag_colour
from egress.mp4 import Mp4Writer
from egress.stream import EgressStream
from ipc.colour import Colour
from ipc.frame import FrameFlag
from ipc.messages import EgressConfig, StreamState, StreamStats
from tests.egress.moving_pictures import moving_yuv420p, psnr
from tests.egress.stream_helpers import source_audio, write_frame
from tests.ingest.stream_helpers import SentMessages, owned_ring, ring_spec

SPEC = ClipSpec(width=256, height=192, audio_channels=2)
FRAMES = 30


def read_mp4(path: Path) -> tuple[list[av.VideoFrame], list[av.AudioFrame], str | None]:
    with av.open(str(path)) as container:
        audio_codec = (
            container.streams.audio[0].codec_context.name if container.streams.audio else None
        )
        video: list[av.VideoFrame] = []
        audio: list[av.AudioFrame] = []
        for frame in container.decode(*container.streams):
            (video if isinstance(frame, av.VideoFrame) else audio).append(frame)  # type: ignore[arg-type]
    return video, audio, audio_codec


async def test_clip_through_the_ring_becomes_an_mp4_with_audio(tmp_path: Path) -> None:
    path = tmp_path / "out" / "processed.mp4"
    spec = ring_spec("out")
    sent = SentMessages()
    audio = source_audio(SPEC, FRAMES, "aac")
    async with owned_ring(spec) as ring:
        config = EgressConfig(ring=spec, output_path=str(path), stats_interval_s=0.1)
        stream = EgressStream("clip-out-1", config, sent.send)
        stream.start()
        try:
            with ring.writer() as writer:
                for message in audio[:4]:
                    stream.on_audio(message)
                for index in range(FRAMES):
                    flags = FrameFlag.END_OF_STREAM if index == FRAMES - 1 else 0
                    write_frame(writer, SPEC, index, flags=flags)
                    for message in audio:
                        if SPEC.pts(index) < message.pts <= SPEC.pts(index + 1):
                            stream.on_audio(message)
                    await asyncio.sleep(0.01)
            done = await sent.wait_for(StreamState, lambda m: m.state != "processing")
        finally:
            await stream.stop()

    assert done.state == "completed"
    assert path.exists() and not Path(str(path) + ".part").exists()
    video, decoded_audio, audio_codec = read_mp4(path)
    assert [read_frame_counter(f) for f in video] == list(range(FRAMES))
    assert {(f.width, f.height) for f in video} == {(SPEC.width, SPEC.height)}
    assert [round(f.time * SPEC.fps) for f in video] == list(range(FRAMES))  # first pts is 0
    assert audio_codec == "aac"
    seconds = sum(f.samples for f in decoded_audio) / decoded_audio[0].sample_rate
    assert seconds == pytest.approx(FRAMES / SPEC.fps, abs=0.1)
    assert decoded_audio[0].time == pytest.approx(0.0, abs=1 / SPEC.fps)  # in sync with frame 0
    assert sent.of(StreamStats)[-1].frames_out == FRAMES


def test_writer_scales_other_sizes_to_the_first_and_drops_non_increasing_pts(
    tmp_path: Path,
) -> None:
    path = tmp_path / "sizes.mp4"
    writer = Mp4Writer(str(path), audio=False)
    large = ClipSpec(width=512, height=384)
    for index in range(10):
        writer.video(video_frame(SPEC if index < 5 else large, index), SPEC.pts(index))
    writer.video(video_frame(SPEC, 10), SPEC.pts(3))  # goes back in time: dropped
    assert writer.close() is True
    video, audio, codec = read_mp4(path)
    assert len(video) == 10 and audio == [] and codec is None
    assert {(f.width, f.height) for f in video} == {(256, 192)}
    assert [read_frame_counter(f) for f in video[:5]] == list(range(5))
    assert writer.dropped()["mp4_scaled"] == 5
    assert writer.dropped()["non_increasing_pts"] == 1


def test_writer_without_frames_writes_no_file_and_abort_removes_the_part(tmp_path: Path) -> None:
    empty = Mp4Writer(str(tmp_path / "empty.mp4"))
    assert empty.close() is False
    assert list(tmp_path.iterdir()) == []

    aborted = Mp4Writer(str(tmp_path / "aborted.mp4"))
    for index in range(40):  # enough for the encoder to hand packets to the file
        aborted.video(video_frame(SPEC, index), SPEC.pts(index))
    assert (tmp_path / "aborted.mp4.part").exists()
    aborted.abort()
    assert list(tmp_path.iterdir()) == []


def test_opus_audio_is_reencoded_to_aac_and_audio_before_the_video_is_dropped(
    tmp_path: Path,
) -> None:
    path = tmp_path / "opus.mp4"
    writer = Mp4Writer(str(path))
    audio = source_audio(SPEC, 20, "opus")
    for message in audio:
        if message.pts < SPEC.pts(2):
            writer.audio(message)  # arrives before the first picture
    for index in range(2, 20):
        writer.video(video_frame(SPEC, index), SPEC.pts(index))
        for message in audio:
            if SPEC.pts(index) <= message.pts < SPEC.pts(index + 1):
                writer.audio(message)
    assert writer.close()
    video, decoded_audio, codec = read_mp4(path)
    assert len(video) == 18 and codec == "aac"
    assert writer.dropped()["audio_before_video"] > 0
    seconds = sum(f.samples for f in decoded_audio) / 48_000
    assert seconds == pytest.approx(18 / SPEC.fps, abs=0.1)


@pytest.mark.parametrize(
    ("colour", "want"),
    [(Colour(matrix=1, range=2, primaries=1, transfer=1), (1, 2)), (None, (6, 1))],
)
def test_the_file_declares_the_pictures_colour(
    tmp_path: Path, colour: Colour | None, want: tuple[int, int]
) -> None:
    path = tmp_path / "tagged.mp4"
    writer = Mp4Writer(str(path), audio=False)
    for index in range(3):
        frame = video_frame(SPEC, index)
        if colour is not None:
            tag_colour(frame, colour)
        writer.video(frame, SPEC.pts(index))
    assert writer.close() is True
    with av.open(str(path)) as container:
        first = next(iter(container.decode(video=0)))
    assert (int(first.colorspace), int(first.color_range)) == want


def test_writer_meets_its_bitrate_under_60_fps_timestamps(tmp_path: Path) -> None:
    # The file declares 30 fps; x264 (no zerolatency here) budgets by the timestamps anyway.
    path = tmp_path / "out.mp4"
    writer = Mp4Writer(str(path), audio=False, bit_rate=1_000_000)
    fps, seconds, side = 60, 3, 512
    pts = [90_000 + i * 1_500 for i in range(fps * seconds)]
    for index, p in enumerate(pts):
        planes = moving_yuv420p(side, side, index)
        writer.video(av.VideoFrame.from_ndarray(planes, format="yuv420p"), p)
    writer.close()
    video, _, _ = read_mp4(path)
    assert [f.pts * f.time_base * 90_000 for f in video] == [p - pts[0] for p in pts]
    bits_per_second = path.stat().st_size * 8 / seconds
    assert 300_000 < bits_per_second < 3_000_000, bits_per_second
    quality = [psnr(f.to_ndarray(), moving_yuv420p(side, side, i)) for i, f in enumerate(video)]
    assert min(quality[fps:]) > 30, min(quality[fps:])
