"""Frame hop producer -> consumer across processes: frame ring vs multiprocessing Queue and Pipe.

The benchmark process is the producer; one spawned process consumes every case (see
``consumer.py``). Cases run in a fixed order, and for each frame size, pixel format and mode the
four transports run back to back on the same pre-generated frames, so they see the same machine
state. The first frames of each case (warm-up) are left out of the figures.

Transports:
- ``ring-copy``: ``RingWriter.write`` + ``RingReader.read(copy=True)`` (wake-up socket).
- ``ring-view``: the same with ``read(copy=False)`` (zero-copy view, released after stamping).
- ``queue``: ``multiprocessing.Queue(maxsize=4).put((index, stamp, ndarray))`` (pickle).
- ``pipe``: ``Connection.send_bytes`` of a buffer holding a 16-byte header and the frame bytes.

Modes: ``flood`` (as fast as the producer can hand frames over; the ring drops what the consumer
cannot take, the queue and pipe block the producer) and ``paced`` (30 frames per second, so every
hop includes waking a sleeping consumer).

Baseline: ``np.copyto`` of the same frame bytes into a preallocated array in one process, cycling
through the same frames and four destinations as the ring's four slots, back to back (compared
with flood cases) and once per 1/30 s (compared with paced cases: a copy right after a sleep runs
on a cold CPU, and so does every paced hop).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from benchmarks.ipc.consumer import PIPE_HEADER, SENT_STAGE, serve
from ipc.frame import NUM_STAGES, FrameFlag
from ipc.ring import FrameRing, RingSpec, RingWriter
from ipc.shm import ring_name, sweep

TRANSPORTS = ("ring-copy", "ring-view", "queue", "pipe")
SIZES = ((512, 512), (1280, 720))
FORMATS = ("rgb24", "yuv420p")
MODES = ("paced", "flood")
PACE_FPS = 30
RING_SLOTS = 4
QUEUE_SIZE = 4
DISTINCT_FRAMES = 8
TIME_BASE = Fraction(1, PACE_FPS)
REPLY_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Config:
    """How many frames each case sends (measured frames come after the warm-up frames)."""

    flood_frames: int
    flood_warmup: int
    paced_frames: int
    paced_warmup: int
    memcpy_reps: int
    paced_memcpy_reps: int

    @classmethod
    def full(cls) -> Config:
        return cls(
            flood_frames=1000,
            flood_warmup=50,
            paced_frames=300,
            paced_warmup=15,
            memcpy_reps=3000,
            paced_memcpy_reps=150,
        )

    @classmethod
    def quick(cls) -> Config:
        return cls(
            flood_frames=150,
            flood_warmup=20,
            paced_frames=20,
            paced_warmup=4,
            memcpy_reps=300,
            paced_memcpy_reps=20,
        )

    def frames(self, mode: str) -> tuple[int, int]:
        """(measured, warm-up) frames for ``mode``."""
        if mode == "flood":
            return self.flood_frames, self.flood_warmup
        return self.paced_frames, self.paced_warmup


@dataclass(frozen=True)
class Case:
    transport: str
    width: int
    height: int
    pixel_format: str
    mode: str

    @property
    def label(self) -> str:
        return f"{self.width}x{self.height} {self.pixel_format} {self.mode} {self.transport}"


def cases() -> Iterator[Case]:
    """Every case, in the order they run."""
    for width, height in SIZES:
        for pixel_format in FORMATS:
            for mode in MODES:
                for transport in TRANSPORTS:
                    yield Case(transport, width, height, pixel_format, mode)


def make_frames(width: int, height: int, pixel_format: str) -> list[np.ndarray]:
    """Distinct random frames in their packed form (what PyAV's ``to_ndarray`` gives)."""
    shape = (height, width, 3) if pixel_format == "rgb24" else (height * 3 // 2, width)
    rng = np.random.default_rng(width * 7 + height)
    return [rng.integers(0, 256, size=shape, dtype=np.uint8) for _ in range(DISTINCT_FRAMES)]


class Pacer:
    """Sleeps until each frame's slot at ``fps`` (or not at all when ``fps`` is None)."""

    def __init__(self, fps: int | None) -> None:
        self._interval = None if fps is None else 1.0 / fps
        self._start = time.monotonic()

    def wait(self, index: int) -> None:
        if self._interval is None:
            return
        delay = self._start + index * self._interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def measure_memcpy(frames: list[np.ndarray], reps: int, fps: int | None = None) -> np.ndarray:
    """Per-copy ``np.copyto`` durations (ns) of the same bytes, cycling frames and targets.

    ``fps`` paces the copies like a paced case (``None``: back to back).
    """
    targets = [np.empty_like(frames[0]) for _ in range(RING_SLOTS)]
    durations = np.empty(reps, dtype=np.int64)
    pacer = Pacer(fps)
    for i in range(reps + reps // 10):
        source, target = frames[i % len(frames)], targets[i % len(targets)]
        pacer.wait(i)
        started = time.monotonic_ns()
        np.copyto(target, source)
        elapsed = time.monotonic_ns() - started
        if i >= reps // 10:  # the first tenth warms caches and page tables
            durations[i - reps // 10] = elapsed
    return durations


def produce_ring(
    writer: RingWriter, frames: list[np.ndarray], total: int, fps: int | None
) -> list[int]:
    stamps = [0] * NUM_STAGES
    costs = []
    pacer = Pacer(fps)
    for index in range(total):
        frame = frames[index % len(frames)]
        pacer.wait(index)
        sent = time.monotonic_ns()
        stamps[SENT_STAGE] = sent
        writer.write(frame, pts=index, time_base=TIME_BASE, index=index, stamps=stamps)
        costs.append(time.monotonic_ns() - sent)
    writer.write(
        frames[0], pts=total, time_base=TIME_BASE, index=total, flags=FrameFlag.END_OF_STREAM
    )
    return costs


def produce_queue(queue: Any, frames: list[np.ndarray], total: int, fps: int | None) -> list[int]:
    pacer = Pacer(fps)
    for index in range(total):
        frame = frames[index % len(frames)]
        pacer.wait(index)
        queue.put((index, time.monotonic_ns(), frame))
    queue.put(None)
    return []


def produce_pipe(pipe: Any, frames: list[np.ndarray], total: int, fps: int | None) -> list[int]:
    # One send buffer per distinct frame, built beforehand: each send is one send_bytes call
    # with no per-frame copy or pickling (the pipe's best case).
    buffers = [bytearray(PIPE_HEADER.size) + frame.tobytes() for frame in frames]
    pacer = Pacer(fps)
    for index in range(total):
        buffer = buffers[index % len(buffers)]
        pacer.wait(index)
        PIPE_HEADER.pack_into(buffer, 0, index, time.monotonic_ns())
        pipe.send_bytes(buffer)
    pipe.send_bytes(b"")
    return []


class Bench:
    """Owns the consumer process, the queue, the pipe, and the rings of the cases."""

    def __init__(self, config: Config) -> None:
        self.config = config
        ctx = multiprocessing.get_context("spawn")
        self._ctrl, child_ctrl = ctx.Pipe()
        self._queue: Any = ctx.Queue(maxsize=QUEUE_SIZE)
        pipe_in, self._pipe = ctx.Pipe(duplex=False)
        self._consumer = ctx.Process(
            target=serve, args=(child_ctrl, self._queue, pipe_in), name="ipc-bench-consumer"
        )
        self._consumer.start()
        child_ctrl.close()
        pipe_in.close()
        self._case_no = 0

    def _recv(self) -> Any:
        if not self._ctrl.poll(REPLY_TIMEOUT_S):
            raise TimeoutError("the consumer process stopped answering")
        return self._ctrl.recv()

    def run_case(self, case: Case, frames: list[np.ndarray]) -> dict[str, Any]:
        measured, warmup = self.config.frames(case.mode)
        total = measured + warmup
        fps = PACE_FPS if case.mode == "paced" else None
        self._case_no += 1
        ring = None
        spec = None
        if case.transport.startswith("ring"):
            spec = RingSpec(
                name=ring_name(f"bench{self._case_no}", "in"),
                slots=RING_SLOTS,
                max_width=case.width,
                max_height=case.height,
                pixel_format=case.pixel_format,
            )
            ring = FrameRing.create(spec)
        try:
            self._ctrl.send(("case", case.transport, spec, warmup))
            reply = self._recv()
            if reply != "ready":
                return {"error": reply.get("error", "consumer failed to start")}
            started = time.monotonic()
            if ring is not None:
                with ring.writer() as writer:
                    write_costs = produce_ring(writer, frames, total, fps)
            elif case.transport == "queue":
                write_costs = produce_queue(self._queue, frames, total, fps)
            else:
                write_costs = produce_pipe(self._pipe, frames, total, fps)
            produce_s = time.monotonic() - started
            samples = self._recv()
            if ring is not None:
                stats = ring.stats()
                samples["ring_dropped"] = stats.dropped
        finally:
            if ring is not None:
                ring.close()
                ring.unlink()
        samples["write_cost_ns"] = np.asarray(write_costs[warmup:], dtype=np.int64)
        samples["sent"] = measured
        samples["produce_s"] = produce_s
        return samples

    def close(self) -> None:
        try:
            if self._consumer.is_alive():
                self._ctrl.send(("quit",))
            self._consumer.join(10)
        finally:
            if self._consumer.is_alive():
                self._consumer.kill()
                self._consumer.join(5)
            self._queue.close()
            self._queue.join_thread()
            self._pipe.close()
            self._ctrl.close()
            sweep(owners={os.getpid()})


def run(config: Config, progress: Any = None) -> dict[str, Any]:
    """Run every case and the memcpy baselines; return raw samples keyed by case and size."""
    results: dict[str, Any] = {"cases": [], "memcpy": {}, "memcpy_paced": {}}
    bench = Bench(config)
    try:
        frame_sets: dict[tuple[int, int, str], list[np.ndarray]] = {}
        for case in cases():
            key = (case.width, case.height, case.pixel_format)
            if key not in frame_sets:
                frame_sets = {key: make_frames(*key)}  # one frame set in memory at a time
                results["memcpy"][key] = measure_memcpy(frame_sets[key], config.memcpy_reps)
                results["memcpy_paced"][key] = measure_memcpy(
                    frame_sets[key], config.paced_memcpy_reps, PACE_FPS
                )
            samples = bench.run_case(case, frame_sets[key])
            results["cases"].append((case, samples))
            if progress is not None:
                progress(case, samples)
    finally:
        bench.close()
    return results
