"""The infer worker as a real spawned process behind the real supervisor: streams over real
shared-memory rings, parameter replies, live updates, text output, stats and image jobs."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
from collections.abc import AsyncIterator, Callable
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from PIL import Image

from byoc.settings import Settings
from byoc.supervisor import Supervisor
from infer.worker import main as infer_main
from ipc.frame import Stage
from ipc.messages import (
    InferConfig,
    JobProgress,
    JobRequest,
    JobResult,
    Message,
    StreamData,
    StreamReply,
    StreamStart,
    StreamState,
    StreamStats,
    StreamStop,
    StreamUpdate,
    WorkerError,
)
from ipc.ring import FrameRing, RingSpec

SETTINGS = Settings(heartbeat_interval_s=0.2, heartbeat_timeout_s=5.0, worker_start_timeout_s=120.0)
INVERT = {
    "1": {"class_type": "LoadTensor", "inputs": {}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveTensor", "inputs": {"images": ["2", 0]}},
}
STATS_TEXT = {
    **INVERT,
    "4": {"class_type": "FrameStatistics", "inputs": {"image": ["1", 0]}},
    "5": {"class_type": "SaveTextTensor", "inputs": {"data": ["4", 0]}},
}


class Inbox:
    """Collects what the worker sends to the parent."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.changed = asyncio.Event()

    def __call__(self, worker: str, message: Message) -> None:
        self.messages.append(message)
        self.changed.set()

    async def wait_for(self, match: Callable[[Message], bool], timeout: float = 30.0) -> Message:
        async def scan() -> Message:
            while True:
                for message in self.messages:
                    if match(message):
                        return message
                self.changed.clear()
                await self.changed.wait()

        return await asyncio.wait_for(scan(), timeout)


@pytest.fixture
async def infer() -> AsyncIterator[tuple[Supervisor, Inbox]]:
    supervisor = Supervisor(
        SETTINGS, workers={"infer": infer_main}, worker_options={"infer": {"engine": "builtin"}}
    )
    inbox = Inbox()
    supervisor.route((StreamData, StreamStats, StreamState, WorkerError), inbox)
    await supervisor.start()
    assert await supervisor.wait_ready(120), supervisor.snapshot()
    yield supervisor, inbox
    await supervisor.stop()


@pytest.fixture
def rings() -> Any:
    token = f"t{os.getpid()}x{id(object()) % 100000}"
    specs = [
        RingSpec(
            name=f"cbyoc-{token}-{d}", slots=4, max_width=64, max_height=64, pixel_format="rgb24"
        )
        for d in ("in", "out")
    ]
    created = [FrameRing.create(spec) for spec in specs]
    yield specs, created
    for ring in created:
        ring.close()
        ring.unlink()


def frame(value: int, width: int = 32, height: int = 24) -> np.ndarray:
    rng = np.random.default_rng(value)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


async def read_output(ring: FrameRing, reader: Any, timeout: float = 60.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = reader.read(copy=True)
        if got is not None:
            return got
        remaining = deadline - asyncio.get_running_loop().time()
        assert remaining > 0, "no output frame"
        await reader.wait_async(timeout=remaining)


async def start(
    supervisor: Supervisor, inbox: Inbox, config: InferConfig, request_id: str
) -> StreamReply:
    start = StreamStart(stream_id="s1", config=config, request_id=request_id)
    reply = await supervisor.requests.ask("infer", start, request_id, 60)
    assert isinstance(reply, StreamReply)
    return reply


async def test_invalid_workflow_is_rejected_with_400(
    infer: tuple[Supervisor, Inbox], rings: Any
) -> None:
    supervisor, inbox = infer
    (in_spec, out_spec), _ = rings
    bad = {
        "1": {"class_type": "LoadTensor", "inputs": {}},
        "2": {"class_type": "NoSuchNode", "inputs": {}},
    }
    config = InferConfig(in_ring=in_spec, out_ring=out_spec, workflow=json.dumps(bad))
    reply = await start(supervisor, inbox, config, "r-bad")
    assert reply.status == 400
    assert "NoSuchNode" in reply.error


async def test_frames_are_inverted_then_updated_live(
    infer: tuple[Supervisor, Inbox], rings: Any
) -> None:
    supervisor, inbox = infer
    (in_spec, out_spec), (in_ring, out_ring) = rings
    writer, reader = in_ring.writer(), out_ring.reader()
    config = InferConfig(
        in_ring=in_spec, out_ring=out_spec, workflow=json.dumps(INVERT), stats_interval_s=0.2
    )
    assert (await start(supervisor, inbox, config, "r1")).status == 200

    pixels = frame(1)
    writer.write(pixels, pts=3000, time_base=Fraction(1, 90000), stamp=Stage.INGEST_WRITTEN)
    out = await read_output(out_ring, reader)
    assert np.array_equal(out.data.reshape(pixels.shape), 255 - pixels)
    assert out.pts == 3000
    assert out.stamps[Stage.INFER_START] > 0
    assert out.stamps[Stage.INFER_END] >= out.stamps[Stage.INFER_START]
    assert out.stamps[Stage.INFER_WRITTEN] >= out.stamps[Stage.INFER_END]

    # A broken update is refused and the running workflow stays.
    bad = await supervisor.requests.ask(
        "infer",
        StreamUpdate(stream_id="s1", params={"workflow": {"1": {}}}, request_id="u-bad"),
        "u-bad",
        30,
    )
    assert isinstance(bad, StreamReply) and bad.status == 400
    writer.write(frame(2), pts=6000, time_base=Fraction(1, 90000))
    out = await read_output(out_ring, reader)
    assert np.array_equal(out.data.reshape(pixels.shape), 255 - frame(2))

    # A valid update (passthrough at a new output size) is applied between frames.
    ok = await supervisor.requests.ask(
        "infer",
        StreamUpdate(
            stream_id="s1",
            params={
                "workflow": {
                    "1": {"class_type": "LoadTensor", "inputs": {}},
                    "2": {"class_type": "SaveTensor", "inputs": {"images": ["1", 0]}},
                },
                "width": 16,
                "height": 16,
            },
            request_id="u-ok",
        ),
        "u-ok",
        30,
    )
    assert isinstance(ok, StreamReply) and ok.status == 200
    writer.write(frame(3), pts=9000, time_base=Fraction(1, 90000))
    out = await read_output(out_ring, reader)
    assert (out.width, out.height) == (16, 16)

    stats = await inbox.wait_for(lambda m: isinstance(m, StreamStats) and m.frames_out >= 3)
    assert isinstance(stats, StreamStats)
    assert stats.worker == "infer"
    await supervisor.send("infer", StreamStop(stream_id="s1"))
    reader.close()
    writer.close()


async def test_text_outputs_become_data_lines(infer: tuple[Supervisor, Inbox], rings: Any) -> None:
    supervisor, inbox = infer
    (in_spec, out_spec), (in_ring, out_ring) = rings
    writer, reader = in_ring.writer(), out_ring.reader()
    config = InferConfig(in_ring=in_spec, out_ring=out_spec, workflow=json.dumps(STATS_TEXT))
    assert (await start(supervisor, inbox, config, "r-text")).status == 200
    pixels = np.full((24, 32, 3), 51, dtype=np.uint8)
    writer.write(pixels, pts=1, time_base=Fraction(1, 90000), index=7)
    await read_output(out_ring, reader)
    data = await inbox.wait_for(lambda m: isinstance(m, StreamData))
    assert isinstance(data, StreamData)
    line = json.loads(data.line)
    assert line["frame"] == 7
    statistics = json.loads(line["text"])
    assert statistics["mean"][0] == pytest.approx(0.2, abs=1e-3)
    await supervisor.send("infer", StreamStop(stream_id="s1"))
    reader.close()
    writer.close()


def png_base64(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


async def test_image_job_reports_progress_and_returns_a_png(
    infer: tuple[Supervisor, Inbox],
) -> None:
    supervisor, _inbox = infer
    pixels = frame(9)
    body = json.dumps({"image": png_base64(pixels), "workflow": INVERT}).encode()
    request = await supervisor.requests.send(
        "infer",
        JobRequest(job_id="j1", kind="comfystream-image", payload=body, want_progress=True),
        "j1",
    )
    replies = [await supervisor.requests.next_reply(request, 60)]
    while not isinstance(replies[-1], JobResult):
        replies.append(await supervisor.requests.next_reply(request, 60))
    result = replies[-1]
    assert isinstance(result, JobResult) and result.status == 200, result
    answer = json.loads(result.payload)
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["image"]))).convert("RGB"))
    assert np.array_equal(image, 255 - pixels)
    progress = [m for m in replies if isinstance(m, JobProgress)]
    assert [p.data["index"] for p in progress] == list(range(1, len(progress) + 1))
    assert progress and progress[-1].data["total"] == len(progress)


async def test_bad_image_job_is_a_400(infer: tuple[Supervisor, Inbox]) -> None:
    supervisor, _inbox = infer
    body = json.dumps({"image": "not base64!!", "workflow": INVERT}).encode()
    result = await supervisor.requests.ask(
        "infer", JobRequest(job_id="j2", kind="comfystream-image", payload=body), "j2", 60
    )
    assert isinstance(result, JobResult)
    assert result.status == 400
    assert result.error


async def test_a_passthrough_stream_forwards_frames_bit_exact(
    infer: tuple[Supervisor, Inbox],
) -> None:
    supervisor, inbox = infer
    token = f"p{os.getpid()}"
    specs = [
        RingSpec(
            name=f"cbyoc-{token}-{d}", slots=4, max_width=64, max_height=64, pixel_format="yuv420p"
        )
        for d in ("in", "out")
    ]
    rings = [FrameRing.create(spec) for spec in specs]
    try:
        writer, reader = rings[0].writer(), rings[1].reader()
        config = InferConfig(in_ring=specs[0], out_ring=specs[1])
        assert (await start(supervisor, inbox, config, "r-pass")).status == 200
        planes = [
            np.random.default_rng(5).integers(0, 256, shape, dtype=np.uint8)
            for shape in ((32, 48), (16, 24), (16, 24))
        ]
        writer.write(planes, pts=77, time_base=Fraction(1, 90000))
        out = await read_output(rings[1], reader)
        assert np.array_equal(out.data, np.concatenate([p.reshape(-1) for p in planes]))
        assert (out.width, out.height, out.pts) == (48, 32, 77)
        assert out.stamps[Stage.INFER_END] >= out.stamps[Stage.INFER_START] > 0
        await supervisor.send("infer", StreamStop(stream_id="s1"))
        reader.close()
        writer.close()
    finally:
        for ring in rings:
            ring.close()
            ring.unlink()


async def test_a_stop_right_behind_a_start_leaves_no_stream_behind(
    infer: tuple[Supervisor, Inbox], rings: Any
) -> None:
    """The stop used to run before the start it was meant to end (the start warms up in the
    background), and infer kept a stream the parent had forgotten."""
    supervisor, _ = infer
    (in_spec, out_spec), _ = rings
    config = InferConfig(in_ring=in_spec, out_ring=out_spec, workflow=json.dumps(INVERT))
    for i in range(5):
        stream_id = f"race-{i}"
        start = StreamStart(stream_id=stream_id, config=config, request_id=f"start-{i}")
        pending = await supervisor.requests.send("infer", start, f"start-{i}")  # sent first
        await supervisor.send("infer", StreamStop(stream_id=stream_id, reason="test"))
        try:
            reply = await supervisor.requests.next_reply(pending, 60)
        finally:
            supervisor.requests.forget(pending)
        assert isinstance(reply, StreamReply) and reply.status in (200, 409), reply
        # Queued behind the stop: the stream must be gone by now.
        probe = StreamUpdate(stream_id=stream_id, params={}, request_id=f"probe-{i}")
        answer = await supervisor.requests.ask("infer", probe, f"probe-{i}", 60)
        assert isinstance(answer, StreamReply) and answer.status == 404, answer


async def test_a_group_drops_the_frames_of_streams_stopped_while_it_waited() -> None:
    """A round's later group may wait behind an earlier one while a stream of it is stopped;
    its frame is released and never reaches the engine (its rings are about to be unmapped).
    In-process: the race is set up directly on the service's table, which a test with real
    processes cannot do without racing the stop message."""
    import socket

    from infer.worker import InferService
    from ipc.child import WorkerSpec

    parent, child = socket.socketpair()
    service = InferService(WorkerSpec(name="infer", control=child, options={"engine": "builtin"}))

    class Stream:
        def __init__(self, stream_id: str, *, stopping: bool = False) -> None:
            self.stream_id = stream_id
            self.stopping = stopping
            self.idle = asyncio.Event()

    class View:
        released = False

        def release(self) -> None:
            self.released = True

    def engine_call(items: Any) -> Any:
        raise AssertionError(f"the engine was called with {items}")

    try:
        forgotten = Stream("forgotten")  # stopped and gone from the table
        stopping = Stream("stopping", stopping=True)  # its stop waits for the engine thread
        replaced = Stream("replaced")  # a new start took its place
        service.streams.update(
            {"stopping": stopping, "replaced": Stream("replaced")}  # type: ignore[dict-item]
        )
        views = [View(), View(), View()]
        await service._run_group(
            engine_call, [(forgotten, views[0]), (stopping, views[1]), (replaced, views[2])]
        )
        assert all(view.released for view in views)
        assert all(s.idle.is_set() for s in (forgotten, stopping, replaced))
    finally:
        parent.close()
        child.close()
        service._frames_pool.shutdown()
        service._setup_pool.shutdown()
