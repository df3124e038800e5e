"""The consuming process of the IPC benchmark (spawned once, serves every case in turn).

Latency of a frame = the consumer's ``monotonic_ns()`` once it has the frame, minus the
producer's ``monotonic_ns()`` taken just before it handed the frame over. CLOCK_MONOTONIC is
system-wide, so the two stamps compare directly.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.queues import Queue
from typing import Any

import numpy as np

from ipc.frame import FrameFlag, Stage
from ipc.ring import FrameRing, RingSpec

SENT_STAGE = Stage.DECODED
"""The stamp slot the ring producer uses for its "about to write" time."""
PIPE_HEADER = struct.Struct("<qq")  # frame index, producer stamp (ns)
WAIT_LIMIT_S = 30.0


@dataclass
class Samples:
    """What the consumer measured for one case (frames with index >= warm-up only)."""

    latency_ns: list[int] = field(default_factory=list)
    received_ns: list[int] = field(default_factory=list)
    read_cost_ns: list[int] = field(default_factory=list)
    error: str | None = None

    def add(self, index: int, warmup: int, sent: int, received: int) -> None:
        if index >= warmup:
            self.latency_ns.append(received - sent)
            self.received_ns.append(received)

    def as_message(self) -> dict[str, Any]:
        return {
            "latency_ns": np.asarray(self.latency_ns, dtype=np.int64),
            "received_ns": np.asarray(self.received_ns, dtype=np.int64),
            "read_cost_ns": np.asarray(self.read_cost_ns, dtype=np.int64),
            "error": self.error,
        }


def consume_ring(spec: RingSpec, copy: bool, warmup: int, ctrl: Connection) -> Samples:
    samples = Samples()
    with FrameRing.attach(spec) as ring, ring.reader() as reader:
        ctrl.send("ready")
        while True:
            if not reader.wait(WAIT_LIMIT_S):
                samples.error = "timed out waiting for a frame"
                return samples
            while True:
                started = time.monotonic_ns()
                frame = reader.read(copy=copy)
                if frame is None:
                    break
                received = time.monotonic_ns()
                if frame.flags & FrameFlag.END_OF_STREAM:
                    frame.release()
                    return samples
                samples.add(frame.index, warmup, int(frame.stamps[SENT_STAGE]), received)
                if frame.index >= warmup:
                    samples.read_cost_ns.append(received - started)
                frame.release()


def consume_queue(queue: Queue[Any], warmup: int, ctrl: Connection) -> Samples:
    samples = Samples()
    ctrl.send("ready")
    while True:
        item = queue.get(timeout=WAIT_LIMIT_S)
        received = time.monotonic_ns()
        if item is None:
            return samples
        index, sent, _frame = item
        samples.add(index, warmup, sent, received)


def consume_pipe(pipe: Connection, warmup: int, ctrl: Connection) -> Samples:
    samples = Samples()
    ctrl.send("ready")
    while True:
        if not pipe.poll(WAIT_LIMIT_S):
            samples.error = "timed out waiting for a frame"
            return samples
        message = pipe.recv_bytes()
        if not message:
            return samples
        index, sent = PIPE_HEADER.unpack_from(message)
        np.frombuffer(message, dtype=np.uint8, offset=PIPE_HEADER.size)  # the frame, no copy
        received = time.monotonic_ns()
        samples.add(index, warmup, sent, received)


def serve(ctrl: Connection, queue: Queue[Any], pipe: Connection) -> None:
    """Run cases as the parent announces them: ``("case", transport, spec, warmup)``."""
    while True:
        message = ctrl.recv()
        if message[0] == "quit":
            return
        _, transport, spec, warmup = message
        try:
            if transport in ("ring-copy", "ring-view"):
                samples = consume_ring(spec, transport == "ring-copy", warmup, ctrl)
            elif transport == "queue":
                samples = consume_queue(queue, warmup, ctrl)
            elif transport == "pipe":
                samples = consume_pipe(pipe, warmup, ctrl)
            else:
                samples = Samples(error=f"unknown transport {transport!r}")
                ctrl.send("ready")
        except Exception as exc:  # report it to the parent rather than hang it
            samples = Samples(error=f"{type(exc).__name__}: {exc}")
        ctrl.send(samples.as_message())
