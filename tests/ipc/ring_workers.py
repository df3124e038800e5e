"""Process entry points for the ring tests (module-level so spawned processes can import them).

Every function runs in a real spawned process and reports over a ``multiprocessing`` connection.
Frames written by ``flood_producer`` are uniform: every byte equals ``seq % 256``, and the header
carries ``pts = seq * 10`` and ``index = seq - 1``; a consumer that sees anything else saw a torn
frame.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event

import numpy as np

from ipc.frame import Frame, Stage
from ipc.ring import FrameRing, RingSpec
from tests.ipc import os_waits

TIME_BASE = (1, 1000)


def frame_problem(frame: Frame) -> str | None:
    """Why ``frame`` is not a consistent flood frame, or ``None`` if it is."""
    expected = frame.seq % 256
    data = frame.data
    if int(data.min()) != expected or int(data.max()) != expected:
        return f"seq {frame.seq}: pixels {int(data.min())}..{int(data.max())}, want {expected}"
    if frame.pts != frame.seq * 10 or frame.index != frame.seq - 1:
        return f"seq {frame.seq}: header pts={frame.pts} index={frame.index}"
    return None


def flood_producer(spec: RingSpec, width: int, height: int, stop: Event, conn: Connection) -> None:
    """Write uniform frames as fast as possible until ``stop`` is set (60 s at most)."""
    limit = 60.0
    ring = FrameRing.attach(spec)
    writer = ring.writer()
    conn.send(("ready", os.getpid()))
    written = 0
    deadline = time.monotonic() + limit
    while not stop.is_set() and time.monotonic() < deadline:
        for _ in range(20):
            seq = writer.next_seq
            with writer.reserve(width, height, pts=seq * 10, time_base=TIME_BASE) as slot:
                slot.data.fill(seq % 256)
                slot.stamp_on_commit = Stage.INGEST_WRITTEN
            written += 1
    conn.send(("done", written))
    ring.close()


def checking_consumer(
    spec: RingSpec, copy: bool, stop: Event, pause_s: float, conn: Connection
) -> None:
    """Read and check every frame until ``stop`` is set and the ring is drained; report."""
    ring = FrameRing.attach(spec)
    reader = ring.reader()
    conn.send(("ready", os.getpid()))
    seqs: list[int] = []
    problems: list[str] = []
    missed_total = 0
    non_monotonic = 0
    last = reader.last_seq  # a replacement reader carries on after its predecessor
    while True:
        stopping = stop.is_set()
        if not reader.wait(0.05):
            if stopping:
                break
            continue
        while True:
            frame = reader.read(copy=copy)
            if frame is None:
                break
            with frame:
                problem = frame_problem(frame)
                if problem and len(problems) < 10:
                    problems.append(problem)
                if frame.seq <= last or frame.missed != frame.seq - last - 1:
                    non_monotonic += 1
                last = frame.seq
                missed_total += frame.missed
                seqs.append(frame.seq)
                if pause_s:
                    time.sleep(pause_s)  # a slow consumer, so the producer laps it
    conn.send(
        (
            "done",
            {
                "read": len(seqs),
                "first": seqs[0] if seqs else 0,
                "last": last,
                "missed": missed_total,
                "reader_missed": reader.missed,
                "problems": problems,
                "non_monotonic": non_monotonic,
            },
        )
    )
    ring.close()


def idle_waiter(spec: RingSpec, use_async: bool, seconds: float, conn: Connection) -> None:
    """Wait ``seconds`` on an idle ring; report (woke, kernel waits made while waiting)."""
    os_waits.count_waits()
    ring = FrameRing.attach(spec)
    reader = ring.reader()
    loop = os_waits.counting_event_loop() if use_async else None
    start = os_waits.waits_counted()
    if loop is not None:
        woke = loop.run_until_complete(reader.wait_async(seconds))
        loop.close()
    else:
        woke = reader.wait(seconds)
    conn.send((woke, os_waits.waits_counted() - start))
    ring.close()


def woken_reader(spec: RingSpec, use_async: bool, ready: Event, conn: Connection) -> None:
    """Wait (up to 60 s) for a frame; report (woke, seq, pixels' first byte)."""
    ring = FrameRing.attach(spec)
    reader = ring.reader()

    async def wait_in_loop() -> bool:
        ready.set()
        return await reader.wait_async(60)

    if use_async:
        woke = asyncio.run(wait_in_loop())
    else:
        ready.set()
        woke = reader.wait(60)
    frame = reader.read()
    conn.send((woke, frame.seq if frame else None, int(frame.data[0]) if frame else None))
    ring.close()


def view_holder(spec: RingSpec, conn: Connection) -> None:
    """Hold a zero-copy view and answer commands about it: check, release, read, quit."""
    ring = FrameRing.attach(spec)
    reader = ring.reader()
    conn.send("ready")
    reader.wait(30)
    view = reader.read(copy=False)
    assert view is not None
    original = bytes(view.data)
    conn.send(("holding", view.seq))
    while True:
        command = conn.recv()
        if command == "check":
            conn.send(bytes(view.data) == original and frame_problem(view) is None)
        elif command == "release":
            view.release()
            conn.send("released")
        elif command == "read":
            reader.wait(60)
            frame = reader.read()
            conn.send((frame.seq, frame.missed) if frame else None)
        elif command == "quit":
            break
    ring.close()


def ring_owner(prefix: str, conn: Connection) -> None:
    """Create two rings named after this process and sit on them until killed.

    Stands for a parent that dies without cleaning up.
    """
    rings = [
        FrameRing.create(
            RingSpec.for_stream(
                "owned",
                direction,
                slots=2,
                max_width=32,
                max_height=32,
                pixel_format="rgb24",
                prefix=prefix,
            )
        )
        for direction in ("in", "out")
    ]
    conn.send([ring.name for ring in rings])
    time.sleep(120)


def ping_pong_reader(spec: RingSpec, use_async: bool, rounds: int, conn: Connection) -> None:
    """Answer every frame's sequence number; a lost wake-up shows up as a 60 s timeout."""
    ring = FrameRing.attach(spec)
    reader = ring.reader()
    conn.send("ready")

    async def next_frame_async() -> Frame | None:
        return await reader.read_async(timeout=60)

    for _ in range(rounds):
        if use_async:
            frame = asyncio.run(next_frame_async())
        else:
            frame = reader.read() if reader.wait(60) else None
        conn.send(None if frame is None else frame.seq)
        if frame is None:
            break
    ring.close()


class _DieAtStore:
    """Stands in for a role's header view and kills the process at its ``n``-th store.

    Reads and earlier stores go through, so the ring is left exactly as a process killed between
    two stores leaves it.
    """

    def __init__(self, q: memoryview, n: int) -> None:
        self._q = q
        self._left = n

    def __getitem__(self, index: int) -> int:
        return self._q[index]

    def __setitem__(self, index: int, value: int) -> None:
        if self._left == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        self._left -= 1
        self._q[index] = value


def writer_killed_at_store(spec: RingSpec, n: int, seq: int, conn: Connection) -> None:
    """Write one flood frame as a fresh writer, dying at the ``n``-th header store."""
    ring = FrameRing.attach(spec)
    writer = ring.writer()
    writer._q = _DieAtStore(writer._q, n)  # type: ignore[assignment]
    assert writer.next_seq == seq
    writer.write(
        np.full(spec.slot_capacity, seq % 256, np.uint8).reshape(spec.max_height, -1, 3),
        pts=seq * 10,
        time_base=TIME_BASE,
    )
    conn.send("survived")
    conn.recv()  # the parent decides when we go


def reader_killed_at_store(spec: RingSpec, n: int, conn: Connection) -> None:
    """Read one frame as a fresh reader, dying at the ``n``-th header store."""
    ring = FrameRing.attach(spec)
    reader = ring.reader()
    reader._q = _DieAtStore(reader._q, n)  # type: ignore[assignment]
    frame = reader.read()
    conn.send(("survived", None if frame is None else frame.seq))
    conn.recv()
