"""Shared pieces of the end-to-end tests: the runner with its three real worker processes next
to the local orchestrator stand-in, a real-time clip publisher (video with a frame counter and
an audio tone) and an output reader that decodes what the runner publishes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from PIL import Image

from benchmarks.media.clip import COUNTER_MODULO, ClipSpec, audio_frame, read_counter, video_yuv420p
from benchmarks.media.live_ts import LiveTsEncoder, TsChunk, TsSegmentWriter
from benchmarks.media.segment_decoder import SegmentStreamDecoder
from byoc.livepeer.trickle import (
    ChannelClosedError,
    SegmentReadError,
    SubscribeError,
    TrickleError,
    TricklePublisher,
    TrickleSubscriber,
)
from byoc.livepeer.trickle.constants import CONTENT_TYPE_MPEGTS
from byoc.supervisor import default_workers
from byoc.worker_media_path import WorkerMediaPath
from ingest.decoded import DecodedAudio, DecodedVideo
from tests.byoc.harness import Env, running
from tests.byoc.stream_helpers import EventReader, start_via_orch

INVERT: dict[str, Any] = {
    "1": {"class_type": "LoadTensor", "inputs": {}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveTensor", "inputs": {"images": ["2", 0]}},
}
PASSTHROUGH: dict[str, Any] = {
    "1": {"class_type": "LoadTensor", "inputs": {}},
    "2": {"class_type": "SaveTensor", "inputs": {"images": ["1", 0]}},
}
SPEC = ClipSpec(width=256, height=256, fps=30, audio_channels=1)
FRAME_S = 1 / SPEC.fps  # one frame, seconds


@contextlib.asynccontextmanager
async def live_runner(**settings: Any) -> AsyncIterator[Env]:
    """The runner with the real ingest, infer and egress workers (built-in engine), ready."""
    settings.setdefault("engine", "builtin")
    settings.setdefault("worker_start_timeout_s", 120.0)
    async with running(workers=default_workers(), media_factory=WorkerMediaPath, **settings) as env:
        assert await env.runner.supervisor.wait_ready(120)
        yield env


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with live_runner() as env:
        yield env


@dataclass
class StreamUrls:
    """The URLs the stand-in answered ``/ai/stream/start`` with."""

    stream_id: str
    publish: str  # we publish the input here
    subscribe: str  # the processed output
    control: str
    events: str
    data: str | None


async def start_stream(
    env: Env, stream_id: str, params: dict[str, Any] | None = None, *, expect: int = 200
) -> StreamUrls | None:
    """Start a stream through the stand-in with every media channel enabled."""
    async with await start_via_orch(env, stream_id, {"params": params}) as response:
        body = await response.text()
        assert response.status == expect, body
        if expect != 200:
            return None
        h = response.headers
        return StreamUrls(
            stream_id,
            h["X-Publish-Url"],
            h["X-Subscribe-Url"],
            h["X-Control-Url"],
            h["X-Events-Url"],
            h.get("X-Data-Url"),
        )


# ------------------------------------------------------------------------------- the source


@dataclass
class SourceLog:
    """What the source sent: frame indices in order, and the time it started."""

    sent: list[int] = field(default_factory=list)
    segments: int = 0
    error: str | None = None


class LiveSource:
    """Publishes clip frames (and the tone) on a trickle channel at the clip's frame rate.

    Frames are encoded by FFmpeg (libx264 zerolatency, AAC, FFmpeg's MPEG-TS muxer) into 0.5 s
    segments, each opening with a keyframe, as a gateway publishes a camera.
    """

    def __init__(
        self,
        url: str,
        *,
        spec: ClipSpec = SPEC,
        audio: bool = True,
        segment_seconds: float = 0.5,
        first_index: int = 0,
    ) -> None:
        self.spec = spec
        self.audio = audio
        self.next_index = first_index
        self.publisher = TricklePublisher(
            url, CONTENT_TYPE_MPEGTS, verify_tls=False, delete_on_close=False
        )
        self.encoder = LiveTsEncoder(
            frame_rate=spec.fps,
            segment_seconds=segment_seconds,
            audio_codec="aac" if audio else None,
            audio_rate=spec.audio_rate,
            audio_channels=spec.audio_channels,
        )
        self.log = SourceLog()
        self._segments = TsSegmentWriter(self.publisher)
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def start(self, frames: int | None = None) -> None:
        """Publish ``frames`` frames (or until ``stop()``) in the background, in real time."""
        self._task = asyncio.create_task(self._run(frames))

    async def _run(self, frames: int | None) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        sent = 0
        try:
            while (frames is None or sent < frames) and not self._stop.is_set():
                delay = t0 + sent * FRAME_S - loop.time()
                if delay > 0:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), delay)
                    if self._stop.is_set():
                        break
                await self._send(self.next_index)
                self.log.sent.append(self.next_index)
                self.next_index += 1
                sent += 1
            await self._write(self.encoder.close())
        except (ChannelClosedError, TrickleError) as exc:
            self.log.error = str(exc)

    async def _send(self, index: int) -> None:
        spec = self.spec
        chunks = self.encoder.video(video_yuv420p(spec, index), spec.pts(index))
        if self.audio:
            start = spec.samples_before(index)
            chunks += self.encoder.audio(
                audio_frame(spec, start, spec.samples_before(index + 1) - start)
            )
        await self._write(chunks)

    async def _write(self, chunks: list[TsChunk]) -> None:
        await self._segments.write(chunks)
        self.log.segments = self._segments.segments

    async def wait(self, timeout: float = 30.0) -> SourceLog:
        """Wait until every frame was sent (the last segment closed)."""
        assert self._task is not None
        await asyncio.wait_for(asyncio.shield(self._task), timeout)
        return self.log

    async def stop(self) -> SourceLog:
        """Stop sending and close the publisher (the channel stays: the stand-in owns it)."""
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 60)
        await self._segments.close()
        with contextlib.suppress(Exception):
            await self.publisher.close()
        return self.log


# ------------------------------------------------------------------------------- the events


class EventLog:
    """Collects every status event of a stream's events channel in the background."""

    def __init__(self, url: str) -> None:
        self.reader = EventReader(url)
        self.events: list[dict[str, Any]] = []
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        with contextlib.suppress(Exception):
            while True:
                event = await self.reader.next(timeout=3600)
                if event is None:
                    return
                self.events.append(event["event"])

    async def until(self, predicate: Any, timeout: float = 60.0) -> dict[str, Any]:
        """The first collected event (old or new) that satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if predicate(event):
                    return event
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching event in {timeout}s: {self.events[-3:]}")
            await asyncio.sleep(0.05)

    async def latest_after(self, moment: float, timeout: float = 60.0) -> dict[str, Any]:
        """The first event stamped after ``moment`` (wall clock seconds)."""
        return await self.until(lambda e: e["timestamp"] > moment * 1000, timeout)

    async def close(self) -> None:
        await self.reader.close()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


# ------------------------------------------------------------------------------- the reader


@dataclass
class OutFrame:
    """One decoded output picture."""

    counter: int | None  # the clip's counter read from the pixels (None: unreadable)
    inverted: bool | None  # whether the picture is the inverted clip frame (None: unknown)
    pts: int
    width: int
    height: int
    luma: np.ndarray
    arrived: float  # loop time when decoded


class OutputReader:
    """Follows an output channel, decoding every picture and audio frame as it comes."""

    def __init__(self, url: str, *, start_seq: int = 0, spec: ClipSpec = SPEC) -> None:
        self.spec = spec
        self.subscriber = TrickleSubscriber(url, start_seq=start_seq, verify_tls=False)
        self.decoder = SegmentStreamDecoder(pixel_format="yuv420p", audio=True)
        self.frames: list[OutFrame] = []
        self.audio: list[DecodedAudio] = []
        self.segments = 0
        self.error: str | None = None
        self.ended = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> OutputReader:
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        try:
            async for segment in self.subscriber:
                self.segments += 1
                self._take(self.decoder.new_segment())
                try:
                    async for chunk in segment.chunks():
                        self._take(self.decoder.feed(chunk) + self.decoder.flush_pending())
                except SegmentReadError as exc:
                    self.error = str(exc)
            self._take(self.decoder.close())
        except SubscribeError as exc:
            self.error = str(exc)
        finally:
            self.ended = True

    def _take(self, items: list[DecodedVideo | DecodedAudio]) -> None:
        now = asyncio.get_running_loop().time()
        for item in items:
            if isinstance(item, DecodedAudio):
                self.audio.append(item)
                continue
            assert item.array is not None
            luma = item.array[: item.height].copy()
            counter, inverted = identify(luma, self.spec)
            self.frames.append(
                OutFrame(
                    counter,
                    inverted,
                    item.pts,
                    item.width,
                    item.height,
                    luma,
                    now,
                )
            )

    def counters(self) -> list[int]:
        return [f.counter for f in self.frames if f.counter is not None]

    async def wait_for(self, predicate: Any, timeout: float = 60.0) -> None:
        """Wait until ``predicate(self)`` holds."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"output condition not met in {timeout}s: {len(self.frames)} frames, "
                    f"{self.segments} segments, error={self.error}"
                )
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        await self.subscriber.close()
        if self._task is not None:
            done, _ = await asyncio.wait([self._task], timeout=5)
            if not done:
                self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def identify(luma: np.ndarray, spec: ClipSpec = SPEC) -> tuple[int | None, bool | None]:
    """The clip frame an output picture shows, and whether it is inverted.

    Inverting swaps the counter's bit row and check row, so the plain reading of an inverted
    frame ``i`` is ``4095 - i``: the rest of the picture (the moving pattern) tells them apart.
    """
    value = read_counter(luma)
    if value is None:
        return None, None
    candidates = [(value, False), (COUNTER_MODULO - 1 - value, True)]
    errors = [
        float(
            np.abs(
                luma.astype(np.int16) - _fit(expected_luma(i, inverted=inv, spec=spec), luma)
            ).mean()
        )
        for i, inv in candidates
    ]
    return candidates[int(errors[1] < errors[0])]


def _fit(expected: np.ndarray, luma: np.ndarray) -> np.ndarray:
    """``expected`` scaled to the output's size (the runner scales to ``params`` width/height)."""
    if expected.shape == luma.shape:
        return expected
    picture = Image.fromarray(expected.clip(0, 255).astype(np.uint8))
    scaled = picture.resize((luma.shape[1], luma.shape[0]), Image.Resampling.BILINEAR)
    return np.asarray(scaled).astype(np.int16)


def expected_luma(index: int, *, inverted: bool, spec: ClipSpec = SPEC) -> np.ndarray:
    """The source luma of frame ``index`` (inverted as an RGB invert mirrors limited-range
    luma: ``Y' = 16 + 235 - Y``)."""
    luma = video_yuv420p(spec, index)[: spec.height].astype(np.int16)
    return (251 - luma) if inverted else luma
