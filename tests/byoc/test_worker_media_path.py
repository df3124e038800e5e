"""The parent's media pipeline with a real supervisor and a real infer worker: rings, workflow
errors as 400s, live updates, stopping and resuming after an infer restart."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from byoc.media_path import ParamsRejected, StreamSpec
from byoc.settings import Settings
from byoc.supervisor import Supervisor, WorkerState
from byoc.worker_media_path import WorkerMediaPath
from infer.worker import main as infer_main
from ipc.pixfmt import RingPixelFormat
from ipc.ring import FrameRing

SETTINGS = Settings(
    heartbeat_interval_s=0.2,
    heartbeat_timeout_s=5.0,
    worker_start_timeout_s=120.0,
    restart_backoff_initial_s=0.1,
)
INVERT = {
    "1": {"class_type": "LoadTensor", "inputs": {}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveTensor", "inputs": {"images": ["2", 0]}},
}


def spec(stream_id: str, **params: object) -> StreamSpec:
    return StreamSpec(
        stream_id=stream_id,
        capability="comfystream-video",
        control_url="http://127.0.0.1:9/ai/trickle/x-control",
        events_url="http://127.0.0.1:9/ai/trickle/x-events",
        params=dict(params),
    )


@contextlib.asynccontextmanager
async def media_path(
    pixel_format: RingPixelFormat | None = None,
) -> AsyncIterator[WorkerMediaPath]:
    supervisor = Supervisor(
        SETTINGS, workers={"infer": infer_main}, worker_options={"infer": {"engine": "builtin"}}
    )
    media = WorkerMediaPath(
        supervisor, SETTINGS, max_width=64, max_height=64, pixel_format=pixel_format
    )
    media.connect_workers()
    await supervisor.start()
    try:
        assert await supervisor.wait_ready(120)
        yield media
    finally:
        await media.close()
        await supervisor.stop()


@pytest.fixture
async def pipeline() -> AsyncIterator[WorkerMediaPath]:
    """Rings forced to yuv420p (what a GPU host gets), so infer converts colours itself."""
    async with media_path("yuv420p") as media:
        yield media


def segments_of(stream_id: str, media: WorkerMediaPath) -> list[str]:
    stream = media.streams[stream_id]
    return [ring.name for ring in stream.rings]


def yuv_frame(luma: int, width: int = 32, height: int = 32) -> list[np.ndarray]:
    """Planes of a flat grey yuv420p frame."""
    chroma = np.full((height // 2, width // 2), 128, dtype=np.uint8)
    return [np.full((height, width), luma, dtype=np.uint8), chroma, chroma.copy()]


async def round_trip(media: WorkerMediaPath, stream_id: str, luma: int) -> np.ndarray:
    """Write a frame into the stream's input ring and read what comes out of its output ring.

    A worker that is (re)starting may not have attached yet: another frame is written every
    few seconds until one comes out (60 s hang guard).
    """
    in_spec, out_spec = (ring.spec for ring in media.streams[stream_id].rings)
    producer, consumer = FrameRing.attach(in_spec), FrameRing.attach(out_spec)
    try:
        writer, reader = producer.writer(), consumer.reader()
        for attempt in range(1, 13):
            writer.write(yuv_frame(luma), pts=attempt, time_base=Fraction(1, 90000))
            frame = await reader.read_async(copy=True, timeout=5.0)
            if frame is not None:
                return np.asarray(frame.data[: 32 * 32])
        raise AssertionError("no output frame")
    finally:
        producer.close()
        consumer.close()


async def test_a_cpu_infer_worker_gets_rgb24_rings_and_inverts_them() -> None:
    async with media_path() as media:
        assert media.supervisor.workers["infer"].detail["device"] == "cpu"
        await media.start(spec("rgb", workflow=INVERT))
        assert [ring.spec.pixel_format for ring in media.streams["rgb"].rings] == ["rgb24"] * 2
        in_spec, out_spec = (ring.spec for ring in media.streams["rgb"].rings)
        rgb = np.random.default_rng(7).integers(0, 256, (33, 31, 3), dtype=np.uint8)
        producer, consumer = FrameRing.attach(in_spec), FrameRing.attach(out_spec)
        try:
            writer, reader = producer.writer(), consumer.reader()
            writer.write(rgb, pts=1, time_base=Fraction(1, 90000))
            frame = await reader.read_async(copy=True, timeout=60.0)
        finally:
            producer.close()
            consumer.close()
        assert frame is not None and (frame.width, frame.height) == (31, 33)
        assert np.array_equal(frame.planes[0], 255 - rgb)


async def test_invalid_workflow_is_rejected_and_leaves_nothing(
    pipeline: WorkerMediaPath,
) -> None:
    bad = {
        "1": {"class_type": "LoadTensor", "inputs": {}},
        "2": {"class_type": "Nope", "inputs": {}},
    }
    with pytest.raises(ParamsRejected, match="Nope"):
        await pipeline.start(spec("bad", workflow=bad))
    assert "bad" not in pipeline.streams
    assert not [p for p in os.listdir("/dev/shm") if "bad" in p and p.startswith("cbyoc")]


async def test_width_without_height_is_rejected(pipeline: WorkerMediaPath) -> None:
    with pytest.raises(ParamsRejected, match="together"):
        await pipeline.start(spec("half", width=256))


async def test_frames_flow_updates_apply_and_stop_unlinks(pipeline: WorkerMediaPath) -> None:
    await pipeline.start(spec("s1", workflow=INVERT))
    names = segments_of("s1", pipeline)
    assert all(Path("/dev/shm", name).exists() for name in names)
    assert pipeline.alive("s1")

    luma = await round_trip(pipeline, "s1", 60)
    assert abs(int(luma.mean()) - (16 + 235 - 60)) <= 2  # inverted in RGB = mirrored luma

    with pytest.raises(ParamsRejected):
        await pipeline.update("s1", {"workflow": {"1": {"class_type": "Nope"}}})
    await pipeline.update(
        "s1",
        {
            "prompts": [
                {
                    "1": {"class_type": "LoadTensor", "inputs": {}},
                    "2": {"class_type": "SaveTensor", "inputs": {"images": ["1", 0]}},
                }
            ]
        },
    )
    luma = await round_trip(pipeline, "s1", 60)
    assert abs(int(luma.mean()) - 60) <= 2

    await pipeline.stop("s1", "test over")
    assert not pipeline.alive("s1")
    assert not any(Path("/dev/shm", name).exists() for name in names)


async def test_stream_resumes_after_infer_is_killed(pipeline: WorkerMediaPath) -> None:
    await pipeline.start(spec("s2", workflow=INVERT))
    supervisor = pipeline.supervisor
    pid = supervisor.snapshot()["infer"]["pid"]
    os.kill(pid, signal.SIGKILL)
    for _ in range(1200):
        if supervisor.snapshot()["infer"]["restarts"] == 1 and supervisor.is_ready("infer"):
            break
        await asyncio.sleep(0.05)
    assert supervisor.is_ready("infer")
    # The restarted worker re-attaches the same rings; round_trip waits for it.
    luma = await round_trip(pipeline, "s2", 60)
    assert abs(int(luma.mean()) - (16 + 235 - 60)) <= 2


async def test_media_knobs_come_from_the_settings() -> None:
    settings = SETTINGS.replace(
        ring_slots=6,
        ring_max_width=320,
        ring_max_height=240,
        x264_preset="ultrafast",
        segment_seconds=0.5,
        output_crf=30,
        output_bitrate=800_000,
        whep_bitrate=600_000,
        whep_keyframe_min_interval_s=0.75,
    )
    supervisor = Supervisor(settings, workers={})
    media = WorkerMediaPath(supervisor, settings)
    rings = media._create_rings("knobs", 0, 0, "yuv420p")
    try:
        assert [(r.spec.slots, r.spec.max_width, r.spec.max_height) for r in rings] == [
            (6, 320, 240)
        ] * 2
        egress = media._egress_config(spec("knobs"), rings[1].spec, whep=True)
        assert (egress.preset, egress.segment_seconds, egress.crf, egress.bit_rate) == (
            "ultrafast",
            0.5,
            30,
            800_000,
        )
        assert (egress.whep_bit_rate, egress.whep_keyframe_min_interval_s) == (600_000, 0.75)
    finally:
        for ring in rings:
            ring.close()
            ring.unlink()
    assert (media.ring_slots, media.max_width, media.max_height) == (6, 320, 240)


async def test_forced_ring_format_needs_no_infer_worker() -> None:
    media = WorkerMediaPath(Supervisor(SETTINGS, workers={}), SETTINGS, pixel_format="nv12")
    assert await media._ring_format("infer") == "nv12"


async def test_each_stream_s_rings_follow_the_device_of_the_infer_worker_serving_it() -> None:
    """Two infer workers that reported different devices (no GPU needed: the reports are what
    the parent reads): the stream placed on each gets that device's format."""
    supervisor = Supervisor(SETTINGS, workers={"infer": infer_main}, worker_counts={"infer": 2})
    names = supervisor.names("infer")
    for name, device in zip(names, ("cpu", "cuda:1"), strict=True):
        supervisor.workers[name].state = WorkerState.READY
        supervisor.workers[name].detail = {"device": device}
    media = WorkerMediaPath(supervisor, SETTINGS)
    first = supervisor.placement.assign("a")
    second = supervisor.placement.assign("b")
    assert {first, second} == set(names)
    want = {names[0]: "rgb24", names[1]: "yuv420p"}
    assert await media._ring_format(first) == want[first]
    assert await media._ring_format(second) == want[second]
