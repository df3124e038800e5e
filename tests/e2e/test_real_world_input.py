"""Input as cameras, OBS and go-livepeer's gateway make it (``benchmarks.media.camera``: FFmpeg's
encoders and muxer, B-frames, AAC, tagged colour, standalone 2 s segments), through the runner's
real worker processes, with the output read back by FFmpeg's demuxer and decoder (PyAV) and
checked by the ``ffmpeg`` command: one case per row of the real-world input report.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

from benchmarks.media.camera import (
    PATCHES,
    CameraSpec,
    camera_segments,
    colour_patches,
    patch_centres,
    retype_stream,
    rgb_of_yuv,
)
from benchmarks.media.clip import read_counter
from byoc.livepeer.trickle import (
    SegmentReadError,
    SubscribeError,
    TricklePublisher,
    TrickleSubscriber,
)
from byoc.livepeer.trickle.constants import CONTENT_TYPE_MPEGTS
from byoc.worker_media_path import WorkerMediaPath
from tests.byoc.harness import Env
from tests.e2e.conftest import INVERT, PASSTHROUGH, EventLog, start_stream

HANG_GUARD_S = 90.0
DOUBLE_INVERT: dict[str, Any] = {
    "1": {"class_type": "LoadTensor", "inputs": {}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},
    "4": {"class_type": "SaveTensor", "inputs": {"images": ["3", 0]}},
}
"""Changes no pixel. On this CPU-only host the rings are rgb24, so the colours are converted by
ingest's and egress's swscale; on a GPU host, by infer."""


# ------------------------------------------------------------------------------ input, output


async def publish(url: str, segments: list[bytes], seconds: float) -> None:
    """Each segment whole, in one write, one every ``seconds`` (a gateway writing complete
    segments; the pause only paces the source like a camera)."""
    async with TricklePublisher(url, CONTENT_TYPE_MPEGTS, delete_on_close=False) as publisher:
        start = time.monotonic()
        for i, data in enumerate(segments):
            await asyncio.sleep(max(0.0, start + i * seconds - time.monotonic()))
            writer = await publisher.next_segment()
            await writer.write(data)
            await writer.close()


@dataclass
class OutFrame:
    pts: int
    key: bool
    counter: int | None
    planes: np.ndarray  # packed yuv420p
    matrix: int
    full_range: bool


@dataclass
class Output:
    """Every byte of every output segment, decoded on demand by FFmpeg's demuxer."""

    url: str
    segments: list[bytes] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    def start(self) -> Output:
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        with contextlib.suppress(SubscribeError):
            async with TrickleSubscriber(self.url, start_seq=0, verify_tls=False) as subscriber:
                async for segment in subscriber:
                    self.segments.append(b"")
                    with contextlib.suppress(SegmentReadError):
                        async for chunk in segment.chunks():
                            self.segments[-1] += chunk

    def frames(self) -> list[OutFrame]:
        data = b"".join(self.segments)
        if not data:
            return []
        out: list[OutFrame] = []
        with contextlib.suppress(av.FFmpegError), av.open(io.BytesIO(data)) as container:
            for frame in container.decode(video=0):
                planes = frame.to_ndarray(format="yuv420p")
                out.append(
                    OutFrame(
                        frame.pts,
                        frame.key_frame,
                        read_counter(planes[: frame.height]),
                        planes,
                        int(frame.colorspace),
                        int(frame.color_range) == 2,
                    )
                )
        return out

    async def wait_for_counter(self, counter: int, timeout: float = HANG_GUARD_S) -> list[OutFrame]:
        deadline = time.monotonic() + timeout
        while True:
            frames = self.frames()
            if any(f.counter == counter for f in frames):
                return frames
            if time.monotonic() > deadline:
                seen = [f.counter for f in frames]
                raise AssertionError(f"counter {counter} not out in {timeout}s: {seen[-5:]}")
            await asyncio.sleep(0.5)

    def ffmpeg_errors(self) -> list[str]:
        """What ``ffmpeg -i out.ts -f null -`` complains about."""
        if shutil.which("ffmpeg") is None:
            pytest.skip("the ffmpeg command checks the output as a gateway's FFmpeg reads it")
        with tempfile.NamedTemporaryFile(suffix=".ts") as file:
            file.write(b"".join(self.segments))
            file.flush()
            result = subprocess.run(
                ["ffmpeg", "-hide_banner", "-nostdin", "-i", file.name, "-f", "null", "-"],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        assert result.returncode == 0, result.stderr[-2000:]
        return [
            line
            for line in result.stderr.splitlines()
            if "error" in line.lower() or "monoton" in line.lower()
        ]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


@contextlib.asynccontextmanager
async def stream(
    env: Env, stream_id: str, workflow: dict[str, Any]
) -> AsyncIterator[tuple[str, Output, EventLog]]:
    urls = await start_stream(env, stream_id, {"workflow": workflow})
    assert urls is not None
    output = Output(urls.subscribe).start()
    events = EventLog(urls.events)
    try:
        yield urls.publish, output, events
    finally:
        await output.close()
        await events.close()


def last_out(count: int, spec: CameraSpec) -> int:
    """The last picture that can come out while the input stays open: a decoder holds the last
    ``b_frames`` pictures of the input back until more input comes (B-frame reordering)."""
    return count - 1 - spec.b_frames


def consecutive_spacing(frames: list[OutFrame], spec: CameraSpec) -> None:
    """Output timestamps keep the input's spacing: for every two output pictures, the pts
    difference is the difference of their source pictures' pts."""
    known = [f for f in frames if f.counter is not None]
    assert len(known) >= 2
    for a, b in itertools.pairwise(known):
        assert a.counter is not None and b.counter is not None
        assert b.pts - a.pts == spec.pts(b.counter) - spec.pts(a.counter), (a.counter, b.counter)


# ------------------------------------------------------------------------------ the rows


async def test_whole_segments_arriving_at_once_keep_their_frames_and_cadence(env: Env) -> None:
    spec = CameraSpec(width=320, height=240, fps=30)  # small: the test host is shared
    frames_sent = 180  # three 2 s segments, each written in one go
    segments = camera_segments(spec, frames_sent)
    async with stream(env, "burst", PASSTHROUGH) as (publish_url, output, events):
        await publish(publish_url, segments, spec.segment_seconds)
        frames = await output.wait_for_counter(last_out(frames_sent, spec))
        final = await events.latest_after(time.time(), timeout=30)
    counters = [f.counter for f in frames if f.counter is not None]
    assert len(counters) == len(frames), "every output picture is a clip frame"
    assert counters == sorted(set(counters))
    missing = sorted(set(range(frames_sent)) - set(counters))
    assert len(counters) >= 0.95 * frames_sent, (len(counters), missing, final["frames_dropped"])
    consecutive_spacing(frames, spec)


@pytest.mark.parametrize(
    "spec",
    [
        CameraSpec(width=320, height=240, fps=24),
        CameraSpec(width=320, height=240, fps=25),
        CameraSpec(width=320, height=240, fps=50),
        CameraSpec(width=320, height=240, fps=60),
        CameraSpec(width=320, height=240, fps=30, vfr=True),
    ],
    ids=["24", "25", "50", "60", "vfr"],
)
async def test_any_frame_rate_keeps_its_timestamps_and_ffmpeg_reads_it_cleanly(
    env: Env, spec: CameraSpec
) -> None:
    count = round(spec.fps * 2 * spec.segment_seconds)
    segments = camera_segments(spec, count)
    async with stream(env, f"rate{spec.fps}{spec.vfr}", PASSTHROUGH) as (url, output, _events):
        await publish(url, segments, spec.segment_seconds)
        frames = await output.wait_for_counter(last_out(count, spec))
    assert output.ffmpeg_errors() == []
    consecutive_spacing(frames, spec)
    # Timing is what this checks; how many frames a loaded host skips (newest frame wins when
    # infer is behind 60 fps) is not.
    assert len({f.counter for f in frames}) >= count // 2
    for data in output.segments:
        if data:
            with av.open(io.BytesIO(data)) as container:
                first = next(iter(container.demux(video=0)))
                assert first.is_keyframe, "every output segment starts on a keyframe"


@pytest.mark.parametrize(
    ("spec", "want_matrix", "inverted"),
    [
        (CameraSpec(width=1280, height=720, colour="bt709", audio=False), 1, False),
        (CameraSpec(width=640, height=480, colour="bt601", audio=False), 6, False),
        (CameraSpec(width=1280, height=720, colour=None, audio=False), 1, False),
        (CameraSpec(width=640, height=480, colour="bt601", audio=False), 6, True),
        (CameraSpec(width=642, height=362, colour="bt601", audio=False), 6, True),
    ],
    ids=["bt709", "bt601", "untagged-hd", "bt601-inverted", "642x362-inverted"],
)
async def test_colour_is_converted_with_the_input_matrix_and_tagged_on_the_output(
    env: Env, spec: CameraSpec, want_matrix: int, inverted: bool
) -> None:
    segments = camera_segments(spec, round(spec.fps * spec.segment_seconds), colour_patches(spec))
    stream_id = f"colour{spec.height}{spec.colour}{'inv' if inverted else ''}"
    workflow = INVERT if inverted else DOUBLE_INVERT
    async with stream(env, stream_id, workflow) as (url, output, _events):
        media = env.runner.runtime.streams.media
        assert isinstance(media, WorkerMediaPath)
        assert [r.spec.pixel_format for r in media.streams[stream_id].rings] == ["rgb24"] * 2
        publisher = asyncio.create_task(publish(url, segments, spec.segment_seconds))
        deadline = time.monotonic() + HANG_GUARD_S
        while len(output.frames()) < 3:
            assert time.monotonic() < deadline, "no output"
            await asyncio.sleep(0.5)
        await publisher
        frames = output.frames()
    for frame in frames:
        assert (frame.matrix, frame.full_range) == (want_matrix, False)
        rgb = rgb_of_yuv(frame.planes, frame.matrix, frame.full_range)
        middle = spec.height // 2
        for x, made in zip(patch_centres(spec.width), PATCHES, strict=True):
            want = tuple(255 - c for c in made) if inverted else made
            patch = rgb[middle - 8 : middle + 8, x - 8 : x + 8].reshape(-1, 3).mean(0)
            assert np.abs(patch - want).max() <= 2.0, (x, patch, want)


async def test_an_odd_output_size_leaves_trimmed_to_even(env: Env) -> None:
    """The workflow's output is 33x17 (rgb24 rings keep odd sizes through infer); the encoder
    takes even sizes only, so the stream leaves as 32x16."""
    spec = CameraSpec(width=320, height=240, colour="bt601", audio=False)
    segments = camera_segments(spec, round(spec.fps * spec.segment_seconds), colour_patches(spec))
    urls = await start_stream(env, "odd-out", {"workflow": INVERT, "width": 33, "height": 17})
    assert urls is not None
    output = Output(urls.subscribe).start()
    try:
        publisher = asyncio.create_task(publish(urls.publish, segments, spec.segment_seconds))
        deadline = time.monotonic() + HANG_GUARD_S
        while len(output.frames()) < 3:
            assert time.monotonic() < deadline, "no output"
            await asyncio.sleep(0.5)
        await publisher
        frames = output.frames()
    finally:
        await output.close()
    assert {frame.planes.shape for frame in frames} == {(16 * 3 // 2, 32)}


async def test_hevc_input_is_decoded(env: Env) -> None:
    spec = CameraSpec(width=320, height=240, codec="libx265", colour=None)
    count = round(spec.fps * spec.segment_seconds * 2)
    async with stream(env, "hevc", PASSTHROUGH) as (url, output, _events):
        await publish(url, camera_segments(spec, count), spec.segment_seconds)
        frames = await output.wait_for_counter(last_out(count, spec))
    counters = [f.counter for f in frames if f.counter is not None]
    assert len(counters) >= 0.9 * count
    consecutive_spacing(frames, spec)


@pytest.mark.parametrize("case", ["audio-only", "unknown-stream-type"])
async def test_input_without_supported_video_fails_loudly(env: Env, case: str) -> None:
    if case == "audio-only":
        segments = camera_segments(CameraSpec(video=False), 60)
        arrived = "aac audio"
    else:
        segments = [
            retype_stream(s, 0x1B, 0x99)
            for s in camera_segments(CameraSpec(width=320, height=240), 60)
        ]
        arrived = "unsupported stream type 0x99"
    stream_id = f"nogo-{case}"
    async with stream(env, stream_id, PASSTHROUGH) as (url, _output, events):
        publisher = asyncio.create_task(publish(url, segments, 2.0))
        failed = await events.until(lambda e: e["state"] == "failed", timeout=HANG_GUARD_S)
        publisher.cancel()
        await asyncio.gather(publisher, return_exceptions=True)
    for error in (failed["last_error"], (await session_status(env, stream_id))["error"]):
        assert arrived in error and "H.264" in error and "HEVC" in error, error


async def session_status(env: Env, session_id: str) -> dict[str, Any]:
    async with env.http.get(f"{env.url}/byoc/session/{session_id}/status") as response:
        document = await response.json()
        assert response.status == 200, document
    assert isinstance(document, dict)
    return document


async def test_sixteen_bit_greyscale_png_image_job(env: Env) -> None:
    grey = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (32, 1))
    buffer = io.BytesIO()
    Image.fromarray(grey.astype(np.uint16) * 257).save(buffer, format="PNG")
    body = {
        "image": base64.b64encode(buffer.getvalue()).decode(),
        "workflow": PASSTHROUGH,
    }
    async with env.http.post(
        f"{env.url}/process/request/comfystream-image", data=json.dumps(body)
    ) as response:
        answer = await response.json()
        assert response.status == 200, answer
    out = Image.open(io.BytesIO(base64.b64decode(answer["image"])))
    got = np.asarray(out.convert("L")).astype(np.int16)
    assert np.abs(got - grey).max() <= 1, np.abs(got - grey).max()
