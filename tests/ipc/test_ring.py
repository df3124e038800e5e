"""Frame ring: layout, live policy, torn-read safety, zero-copy views, wake-ups and crashes.

Cross-process tests use real spawned processes (``tests/ipc/ring_workers.py``) on real shared
memory; nothing is mocked. Every test leaves ``/dev/shm`` without segments of its prefix.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import secrets
import signal
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from multiprocessing import resource_tracker
from multiprocessing.process import BaseProcess
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipc.frame import NUM_STAGES, FrameFlag, Stage
from ipc.pixfmt import PixelFormat, frame_nbytes, plane_layout
from ipc.ring import FrameRing, FrameTooLarge, RingError, RingSpec, RoleTaken
from ipc.shm import list_regions, ring_name, sweep
from tests.ipc import os_waits, ring_workers

CTX = multiprocessing.get_context("spawn")
TB = Fraction(1, 90000)
_names = itertools.count(1)


@pytest.fixture
def prefix() -> Iterator[str]:
    """A region prefix of this test's own; whatever is left under it is swept afterwards."""
    value = "t" + secrets.token_hex(4)
    yield value
    leftovers = sweep(value)
    assert leftovers == [], f"test left shared memory behind: {leftovers}"


@pytest.fixture
def make_ring(prefix: str) -> Iterator[Callable[..., FrameRing]]:
    """Create rings owned by the test process; they are closed and unlinked at teardown."""
    rings: list[FrameRing] = []

    def make(
        slots: int = 4, width: int = 64, height: int = 48, pixel_format: str = "rgb24"
    ) -> FrameRing:
        spec = RingSpec(
            name=ring_name(f"s{next(_names)}", "in", prefix=prefix),
            slots=slots,
            max_width=width,
            max_height=height,
            pixel_format=pixel_format,
        )
        ring = FrameRing.create(spec)
        rings.append(ring)
        return ring

    yield make
    for ring in rings:
        ring.close()
        ring.unlink()


@pytest.fixture
def spawn() -> Iterator[Callable[..., tuple[BaseProcess, Any]]]:
    """Start ``ring_workers`` functions in spawned processes; kill leftovers at teardown."""
    started: list[BaseProcess] = []

    def start(target: Callable[..., None], *args: Any) -> tuple[BaseProcess, Any]:
        parent_end, child_end = CTX.Pipe()
        process = CTX.Process(target=target, args=(*args, child_end), daemon=True)
        process.start()
        child_end.close()
        started.append(process)
        return process, parent_end

    yield start
    for process in started:
        if process.is_alive():
            process.kill()
        process.join(30)


def recv(conn: Any, timeout: float = 60.0) -> Any:
    assert conn.poll(timeout), "child process did not answer in time"
    return conn.recv()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll ``condition`` until it holds; ``timeout`` is only a hang guard."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


def rgb(value: int, width: int = 64, height: int = 48) -> np.ndarray:
    return np.full((height, width, 3), value, dtype=np.uint8)


# --- single process: format, header, policy --------------------------------------------------


@pytest.mark.parametrize("fmt", ["rgb24", "yuv420p", "nv12"])
@pytest.mark.parametrize("copy", [True, False])
def test_frame_round_trip(make_ring: Callable[..., FrameRing], fmt: str, copy: bool) -> None:
    ring = make_ring(pixel_format=fmt, width=64, height=48)
    shape = (48, 64, 3) if fmt == "rgb24" else (72, 64)
    image = np.random.default_rng(1).integers(0, 256, size=shape, dtype=np.uint8)
    with ring.writer() as writer, ring.reader() as reader:
        assert reader.read() is None
        seq = writer.write(
            image,
            pts=123456789012,
            time_base=TB,
            index=41,
            flags=FrameFlag.KEYFRAME,
            stamps={Stage.DECODED: 111},
            stamp=Stage.INGEST_WRITTEN,
        )
        frame = reader.read(copy=copy, stamp=Stage.INFER_READ)
        assert frame is not None
        with frame:
            assert (frame.seq, frame.index, frame.pts, frame.time_base) == (
                seq,
                41,
                123456789012,
                TB,
            )
            assert (frame.width, frame.height) == (64, 48)
            assert frame.pixel_format == PixelFormat[fmt.upper()]
            assert frame.flags == FrameFlag.KEYFRAME
            assert frame.stamps[Stage.DECODED] == 111
            assert 0 < frame.stamps[Stage.INGEST_WRITTEN] <= frame.stamps[Stage.INFER_READ]
            assert frame.missed == 0
            np.testing.assert_array_equal(frame.array, image)
            assert frame.is_view is not copy
            assert frame.data.flags.writeable is copy
        assert reader.read() is None
        assert ring.stats() == msgspec.structs.replace(ring.stats(), written=1, read=1, dropped=0)


def test_odd_size_planes_round_trip(make_ring: Callable[..., FrameRing]) -> None:
    ring = make_ring(pixel_format="yuv420p", width=40, height=20)
    rng = np.random.default_rng(2)
    planes = [rng.integers(0, 256, size=s, dtype=np.uint8) for s in ((17, 33), (9, 17), (9, 17))]
    # Planes may be strided (e.g. PyAV planes with line padding): pass a non-contiguous Y.
    padded_y = np.zeros((17, 40), dtype=np.uint8)
    padded_y[:, :33] = planes[0]
    with ring.writer() as writer, ring.reader() as reader:
        writer.write([padded_y[:, :33], planes[1], planes[2]], pts=0, time_base=TB)
        frame = reader.read()
        assert frame is not None
        assert (frame.width, frame.height) == (33, 17)
        for got, want in zip(frame.planes, planes, strict=True):
            np.testing.assert_array_equal(got, want)
        with pytest.raises(ValueError, match="no single-array form"):
            _ = frame.array


def test_other_format_that_fits_and_frame_too_large(make_ring: Callable[..., FrameRing]) -> None:
    ring = make_ring(pixel_format="rgb24", width=64, height=48)
    with ring.writer() as writer, ring.reader() as reader:
        nv12 = np.full((96, 64), 7, dtype=np.uint8)  # 64x64 nv12: 6144 bytes <= 9216
        writer.write(nv12, pts=1, time_base=TB, pixel_format="nv12")
        frame = reader.read()
        assert frame is not None and frame.pixel_format is PixelFormat.NV12
        assert (frame.width, frame.height) == (64, 64)
        with pytest.raises(FrameTooLarge, match=r"65x48 rgb24 frame needs 9360 bytes.*hold 9216"):
            writer.write(np.zeros((48, 65, 3), np.uint8), pts=0, time_base=TB)
        assert ring.stats().written == 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"slots": 0}, "slots must be between 2 and 64, got 0"),
        ({"slots": 1}, "slots must be between 2 and 64, got 1"),
        ({"slots": -3}, "slots must be between 2 and 64"),
        ({"slots": 65}, "slots must be between 2 and 64"),
        ({"slots": True}, "slots must be an integer"),
        ({"max_width": 0}, "width must be between 1 and 16384, got 0"),
        ({"max_width": -640}, "width must be between 1 and 16384, got -640"),
        ({"max_height": 0}, "height must be between 1 and 16384, got 0"),
        ({"max_height": 20000}, "height must be between 1 and 16384"),
        ({"pixel_format": "rgb"}, "unknown pixel format 'rgb'; supported formats: rgb24"),
        ({"pixel_format": "RGB24"}, "unknown pixel format 'RGB24'"),
        ({"name": "x" * 65}, "is 65 characters long; the limit is 64"),
        ({"name": "a/b"}, "may only contain letters"),
        ({"name": ""}, "non-empty"),
    ],
)
def test_invalid_spec_is_rejected(changes: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = dict(
        name="tvalid-1-s-in", slots=4, max_width=64, max_height=48, pixel_format="rgb24"
    )
    fields.update(changes)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RingSpec(**fields)
    # The same check guards specs arriving in control messages.
    raw = msgspec.msgpack.encode(fields)
    with pytest.raises(msgspec.ValidationError):
        msgspec.msgpack.decode(raw, type=RingSpec)


def test_spec_travels_as_msgpack() -> None:
    spec = RingSpec.for_stream(
        "stream/Ä-1", "out", slots=3, max_width=1280, max_height=720, pixel_format="yuv420p"
    )
    assert spec.name.startswith(f"cbyoc-{os.getpid()}-") and spec.name.endswith("-out")
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(spec), type=RingSpec) == spec
    assert spec.slot_capacity == 1280 * 720 * 3 // 2


def test_invalid_write_arguments(make_ring: Callable[..., FrameRing]) -> None:
    ring = make_ring()
    with ring.writer() as writer:
        image = rgb(1)
        with pytest.raises(ValueError, match="pts must be between"):
            writer.write(image, pts=2**63, time_base=TB)
        with pytest.raises(ValueError, match="time base denominator must be between 1"):
            writer.write(image, pts=0, time_base=(1, 0))
        with pytest.raises(ValueError, match="time_base must be a Fraction"):
            writer.write(image, pts=0, time_base=0.5)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="stamps must have 10 values"):
            writer.write(image, pts=0, time_base=TB, stamps=[1, 2])
        with pytest.raises(ValueError, match="pixels must be uint8"):
            writer.write(image.astype(np.float32), pts=0, time_base=TB)
        with pytest.raises(ValueError, match=r"shape \(height, width, 3\)"):
            writer.write(np.zeros((48, 64), np.uint8), pts=0, time_base=TB)
        with pytest.raises(ValueError, match="unknown pixel format"):
            writer.write(image, pts=0, time_base=TB, pixel_format="bgr0")
        with pytest.raises(ValueError, match="flags must be between"):
            writer.write(image, pts=0, time_base=TB, flags=-1)
        # Nothing half-written was published and no sequence number was used up.
        assert ring.stats().written == 0
        assert writer.next_seq == 1


def test_attach_checks_the_ring(make_ring: Callable[..., FrameRing], prefix: str) -> None:
    ring = make_ring(slots=3, width=64, height=48, pixel_format="rgb24")
    missing = RingSpec(
        name=ring_name("nope", "in", prefix=prefix),
        slots=3,
        max_width=64,
        max_height=48,
        pixel_format="rgb24",
    )
    with pytest.raises(FileNotFoundError, match="no shared memory region named"):
        FrameRing.attach(missing)
    other = msgspec.structs.replace(ring.spec, max_width=32)
    with pytest.raises(RingError, match=r"was created with 3 slots of 64x48 rgb24"):
        FrameRing.attach(other)
    with FrameRing.attach(ring.spec) as attached:
        assert not attached.is_owner
        with pytest.raises(PermissionError, match="only the creator"):
            attached.unlink()
    assert attached.closed and not ring.closed


def test_one_writer_and_one_reader_at_a_time(make_ring: Callable[..., FrameRing]) -> None:
    ring = make_ring()
    attached = FrameRing.attach(ring.spec)
    try:
        writer, reader = ring.writer(), ring.reader()
        with pytest.raises(RoleTaken, match="already has a writer"):
            attached.writer()
        with pytest.raises(RoleTaken, match="already has a reader"):
            attached.reader()
        writer.close()
        reader.close()
        writer.close()  # idempotent
        with attached.writer() as writer2, attached.reader() as reader2:
            writer2.write(rgb(5), pts=0, time_base=TB)
            frame = reader2.read()
            assert frame is not None and frame.seq == 1
    finally:
        attached.close()


def test_full_ring_drops_oldest_and_counts(make_ring: Callable[..., FrameRing]) -> None:
    ring = make_ring(slots=4)
    with ring.writer() as writer, ring.reader() as reader:
        for value in range(1, 11):
            assert writer.write(rgb(value), pts=value * 10, time_base=TB) == value
        stats = ring.stats()
        assert (stats.written, stats.read, stats.dropped, stats.unread) == (10, 0, 6, 4)
        frames = []
        while (frame := reader.read()) is not None:
            frames.append((frame.seq, frame.missed, int(frame.data[0])))
        # The four newest frames survive, in order; the first read reports the six lost.
        assert frames == [(7, 6, 7), (8, 0, 8), (9, 0, 9), (10, 0, 10)]
        writer.write(rgb(11), pts=110, time_base=TB)
        frame = reader.read()
        assert frame is not None and (frame.seq, frame.missed) == (11, 0)
        stats = ring.stats()
        assert (stats.written, stats.read, stats.dropped) == (11, 5, 6)
        assert reader.missed == stats.dropped


def test_view_pins_its_slot(make_ring: Callable[..., FrameRing]) -> None:
    ring = make_ring(slots=3)
    with ring.writer() as writer, ring.reader() as reader:
        writer.write(rgb(1), pts=10, time_base=TB)
        view = reader.read(copy=False)
        assert view is not None and view.is_view
        pixels = view.planes[0]
        with pytest.raises(RuntimeError, match=r"release the frame view \(seq 1\)"):
            reader.read()
        for value in range(2, 12):  # far more frames than slots
            writer.write(rgb(value), pts=value * 10, time_base=TB)
        assert int(pixels.min()) == int(pixels.max()) == 1  # never overwritten
        assert view.seq == 1
        # The two free slots took the ten frames: 8 of them were dropped unread.
        assert ring.stats().dropped == 8
        view.release()
        view.release()  # idempotent
        assert view.planes == () and view.data.size == 0 and not view.is_view
        frame = reader.read()
        assert frame is not None and (frame.seq, frame.missed) == (10, 8)
        for value in range(12, 15):
            writer.write(rgb(value), pts=value * 10, time_base=TB)
        # Released: the producer reused the slot, so the old view now shows newer pixels.
        assert int(pixels[0, 0, 0]) != 1


def test_reservation_abort_and_in_place_write(make_ring: Callable[..., FrameRing]) -> None:
    ring = make_ring(pixel_format="yuv420p")
    with ring.writer() as writer, ring.reader() as reader:
        with pytest.raises(KeyError), writer.reserve(64, 48, pts=1, time_base=TB) as slot:
            slot.planes[0].fill(9)
            raise KeyError("decoder failed")
        assert reader.read() is None and ring.stats().written == 0
        with writer.reserve(64, 48, pts=2, time_base=TB) as slot:
            assert slot.seq == 1
            with pytest.raises(RuntimeError, match="still open"):
                writer.reserve(64, 48, pts=3, time_base=TB)
            slot.array[:] = 200
            slot.stamp_on_commit = Stage.INFER_WRITTEN
        frame = reader.read()
        assert frame is not None and (frame.seq, frame.missed, frame.pts) == (1, 0, 2)
        assert int(frame.data.min()) == 200 and frame.stamps[Stage.INFER_WRITTEN] > 0
        assert slot.planes == () and slot.data.size == 0  # the slot is no longer ours to write
        with pytest.raises(RuntimeError, match="already committed"):
            slot.commit()


def test_close_and_unlink_are_idempotent(prefix: str) -> None:
    spec = RingSpec(
        name=ring_name("idem", "out", prefix=prefix),
        slots=2,
        max_width=16,
        max_height=16,
        pixel_format="rgb24",
    )
    ring = FrameRing.create(spec)
    writer = ring.writer()
    ring.close()
    ring.close()
    assert writer.closed
    with pytest.raises(ValueError, match="closed"):
        writer.write(np.zeros((16, 16, 3), np.uint8), pts=0, time_base=TB)
    with pytest.raises(ValueError, match="closed"):
        ring.stats()
    assert list_regions(prefix) == [spec.name]
    ring.unlink()
    ring.unlink()
    assert list_regions(prefix) == []


def test_header_round_trip_property(make_ring: Callable[..., FrameRing]) -> None:
    ring = make_ring(slots=2, width=32, height=32, pixel_format="rgb24")
    int64 = st.integers(-(2**63), 2**63 - 1)
    with ring.writer() as writer, ring.reader() as reader:

        @settings(max_examples=150, deadline=None)
        @given(
            fmt=st.sampled_from(list(PixelFormat)),
            width=st.integers(1, 32),
            height=st.integers(1, 32),
            pts=int64,
            index=int64,
            tb=st.tuples(st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1)),
            flags=st.integers(0, 2**32 - 1),
            stamps=st.lists(int64, min_size=NUM_STAGES, max_size=NUM_STAGES),
            fill=st.integers(0, 255),
        )
        def check(
            fmt: PixelFormat,
            width: int,
            height: int,
            pts: int,
            index: int,
            tb: tuple[int, int],
            flags: int,
            stamps: list[int],
            fill: int,
        ) -> None:
            with writer.reserve(
                width,
                height,
                pts=pts,
                time_base=tb,
                pixel_format=fmt,
                index=index,
                flags=flags,
                stamps=stamps,
            ) as slot:
                slot.data.fill(fill)
            frame = reader.read(copy=bool(fill % 2))
            assert frame is not None
            with frame:
                assert frame.seq == slot.seq and frame.missed == 0
                assert (frame.pts, frame.index, frame.flags) == (pts, index, flags)
                assert frame.time_base == Fraction(*tb)
                assert (frame.pixel_format, frame.width, frame.height) == (fmt, width, height)
                assert frame.stamps.tolist() == stamps
                layout = plane_layout(fmt, width, height)
                assert [p.shape for p in frame.planes] == [p.shape for p in layout]
                assert frame.data.size == frame_nbytes(fmt, width, height)
                assert int(frame.data.min()) == int(frame.data.max()) == fill

        check()


# --- real processes -------------------------------------------------------------------------


def finish_stream(
    ring: FrameRing, producer: tuple[BaseProcess, Any], consumer: tuple[BaseProcess, Any], stops
) -> tuple[int, dict[str, Any]]:
    producer_stop, consumer_stop = stops
    producer_stop.set()
    status, written = recv(producer[1])
    assert status == "done"
    producer[0].join(30)
    consumer_stop.set()
    status, summary = recv(consumer[1])
    assert status == "done"
    consumer[0].join(30)
    return written, summary


@pytest.mark.parametrize("copy", [True, False], ids=["copy", "view"])
def test_no_torn_frames_with_fast_producer(
    make_ring: Callable[..., FrameRing], spawn: Callable[..., Any], copy: bool
) -> None:
    """A producer lapping a slow consumer: every frame read is whole and in order; drops add up."""
    ring = make_ring(slots=3, width=256, height=256)
    stops = (CTX.Event(), CTX.Event())
    consumer = spawn(ring_workers.checking_consumer, ring.spec, copy, stops[1], 0.002)
    assert recv(consumer[1])[0] == "ready"
    producer = spawn(ring_workers.flood_producer, ring.spec, 256, 256, stops[0])
    assert recv(producer[1])[0] == "ready"

    def lapped_enough() -> bool:
        stats = ring.stats()
        # the consumer may read a whole ring more after the stop: keep a margin of slots
        return stats.read > 50 and stats.dropped > stats.read + 2 * ring.spec.slots

    wait_until(lapped_enough, "the producer to lap the consumer")
    written, summary = finish_stream(ring, producer, consumer, stops)

    assert summary["problems"] == []
    assert summary["non_monotonic"] == 0
    stats = ring.stats()
    assert stats.written == written == summary["last"]
    assert summary["read"] > 50
    assert stats.dropped > summary["read"], "the producer should have lapped the consumer"
    # Exact accounting: every frame was either delivered or counted as dropped.
    assert stats.read == summary["read"]
    assert stats.written == stats.read + stats.dropped
    assert summary["missed"] == summary["reader_missed"] == stats.dropped


@pytest.mark.parametrize("use_async", [False, True], ids=["blocking", "asyncio"])
def test_idle_consumer_sleeps_in_the_kernel(
    make_ring: Callable[..., FrameRing], spawn: Callable[..., Any], use_async: bool
) -> None:
    """A reader waiting on an idle ring sleeps in the kernel: one wait, not a polling loop."""
    ring = make_ring()
    process, conn = spawn(ring_workers.idle_waiter, ring.spec, use_async, 1.0)
    woke, kernel_waits = recv(conn)
    process.join(30)
    assert woke is False
    assert 1 <= kernel_waits <= os_waits.MAX_IDLE_WAITS


@pytest.mark.parametrize("use_async", [False, True], ids=["blocking", "asyncio"])
def test_write_wakes_waiting_consumer(
    make_ring: Callable[..., FrameRing], spawn: Callable[..., Any], use_async: bool
) -> None:
    ring = make_ring()
    ready = CTX.Event()
    process, conn = spawn(ring_workers.woken_reader, ring.spec, use_async, ready)
    assert ready.wait(60)
    wait_until(lambda: os_waits.sleeping_in_poll(process.pid), "the reader to block")
    with ring.writer() as writer:
        writer.write(rgb(77), pts=0, time_base=TB)
        assert recv(conn) == (True, 1, 77)
    process.join(30)


@pytest.mark.parametrize("use_async", [False, True], ids=["blocking", "asyncio"])
def test_every_write_wakes_a_sleeping_reader(
    make_ring: Callable[..., FrameRing], spawn: Callable[..., Any], use_async: bool
) -> None:
    """Ping-pong: each frame is the last one until answered, so a lost wake-up would stall."""
    rounds = 400
    ring = make_ring(slots=2)
    process, conn = spawn(ring_workers.ping_pong_reader, ring.spec, use_async, rounds)
    assert recv(conn) == "ready"
    image = rgb(3)
    with ring.writer() as writer:
        for seq in range(1, rounds + 1):
            writer.write(image, pts=seq, time_base=TB)
            assert recv(conn, timeout=60) == seq
    process.join(30)
    assert ring.stats().dropped == 0


def test_view_held_in_another_process_is_never_overwritten(
    make_ring: Callable[..., FrameRing], spawn: Callable[..., Any]
) -> None:
    ring = make_ring(slots=3)
    process, conn = spawn(ring_workers.view_holder, ring.spec)
    assert recv(conn) == "ready"
    with ring.writer() as writer:

        def write(seq: int) -> None:
            assert writer.write(rgb(seq % 256), pts=seq * 10, time_base=TB, index=seq - 1) == seq

        write(1)
        assert recv(conn) == ("holding", 1)
        for seq in range(2, 60):
            write(seq)
        conn.send("check")
        assert recv(conn) is True
        assert ring.stats().dropped == 56  # 58 frames through the two unpinned slots
        conn.send("release")
        assert recv(conn) == "released"
        for seq in range(60, 70):
            write(seq)
        conn.send("read")
        seq, missed = recv(conn)
        assert seq == 67 and missed == 65  # the oldest of the three newest frames (67-69)
        stats = ring.stats()
        assert stats.written == 69 and stats.read == 2 and stats.dropped == 65
    conn.send("quit")
    process.join(30)


@pytest.mark.parametrize("victim", ["producer", "consumer"])
def test_kill_9_mid_stream_then_recover_and_clean_up(
    prefix: str, spawn: Callable[..., Any], victim: str
) -> None:
    spec = RingSpec(
        name=ring_name(f"kill{victim}", "in", prefix=prefix),
        slots=4,
        max_width=128,
        max_height=128,
        pixel_format="rgb24",
    )
    ring = FrameRing.create(spec)
    try:
        stops = (CTX.Event(), CTX.Event())
        consumer = spawn(ring_workers.checking_consumer, spec, False, stops[1], 0.0)
        assert recv(consumer[1])[0] == "ready"
        producer = spawn(ring_workers.flood_producer, spec, 128, 128, stops[0])
        assert recv(producer[1])[0] == "ready"
        wait_until(lambda: ring.stats().read > 1000, "the stream to run")
        killed = producer if victim == "producer" else consumer
        os.kill(killed[0].pid, signal.SIGKILL)
        killed[0].join(30)
        assert killed[0].exitcode == -signal.SIGKILL
        written_before = ring.stats().written
        read_before = ring.stats().read
        assert written_before > 0

        # The role is free again at once: a replacement attaches and the stream goes on.
        if victim == "producer":
            stops = (CTX.Event(), stops[1])
            producer = spawn(ring_workers.flood_producer, spec, 128, 128, stops[0])
            assert recv(producer[1])[0] == "ready"
        else:
            stops = (stops[0], CTX.Event())
            consumer = spawn(ring_workers.checking_consumer, spec, True, stops[1], 0.0)
            assert recv(consumer[1])[0] == "ready"
        wait_until(
            lambda: (
                ring.stats().written > written_before + 1000
                and ring.stats().read > read_before + 1000
            ),
            "the stream to go on",
        )
        _, summary = finish_stream(ring, producer, consumer, stops)
        assert summary["problems"] == [] and summary["non_monotonic"] == 0
        assert summary["read"] > 0
        stats = ring.stats()
        assert stats.written > written_before
        assert summary["last"] == stats.written  # the survivor/replacement saw the newest frame
        # Exact accounting across the death: a frame half written or half read by the killed
        # process is repaired by its successor (ipc/ring.py, "Death of a role").
        assert stats.written == stats.read + stats.dropped
    finally:
        ring.close()
        ring.unlink()
    assert sweep(prefix) == []
    assert [n for n in os.listdir("/dev/shm") if n.startswith(prefix)] == []


def _outcome_of_killable(process: BaseProcess, conn: Any) -> Any:
    """What a ``*_killed_at_store`` child reported, or ``None`` if it was killed."""
    assert conn.poll(60), "child process did not answer in time"  # a message, or EOF at death
    try:
        report = conn.recv()
    except EOFError:
        process.join(30)
        assert process.exitcode == -signal.SIGKILL
        return None
    conn.send("go")
    process.join(30)
    return report


def _flood_frame(writer: Any, seq: int, width: int = 16, height: int = 8) -> None:
    assert writer.next_seq == seq
    writer.write(rgb(seq % 256, width, height), pts=seq * 10, time_base=ring_workers.TIME_BASE)


@pytest.mark.parametrize("pinned", [False, True], ids=["all-unread", "first-pinned"])
def test_writer_killed_between_any_two_stores_keeps_counts_exact(
    make_ring: Callable[..., FrameRing], spawn: Callable[..., Any], pinned: bool
) -> None:
    """Kill a writer at each of its header stores in turn: its successor repairs the ring.

    The ring is full of unread frames, so the dying write also drops one (a frame the reader has
    pinned when ``pinned``): every frame ends up read or counted as dropped, exactly once.
    """
    deaths = 0
    for store in itertools.count():
        ring = make_ring(slots=3, width=16, height=8)
        with ring.writer() as writer:
            for seq in (1, 2, 3):
                _flood_frame(writer, seq)
        reader = ring.reader()
        seqs = []
        view = reader.read(copy=False) if pinned else None
        if view is not None:
            seqs.append(view.seq)
        process, conn = spawn(ring_workers.writer_killed_at_store, ring.spec, store, 4)
        survived = _outcome_of_killable(process, conn) == "survived"
        if view is not None:
            view.release()
        with ring.writer() as successor:
            _flood_frame(successor, successor.next_seq)
        while (frame := reader.read()) is not None:
            assert ring_workers.frame_problem(frame) is None
            seqs.append(frame.seq)
        stats = ring.stats()
        assert seqs == sorted(set(seqs)), f"killed at store {store}"
        assert stats.written == seqs[-1], f"killed at store {store}"
        assert stats.read == len(seqs), f"killed at store {store}"
        assert stats.written == stats.read + stats.dropped, f"killed at store {store}: {stats}"
        reader.close()
        if survived:
            break
        deaths += 1
    assert deaths >= 4  # claim, drop, sequence, publish: each store was a place to die


def test_reader_killed_between_any_two_stores_keeps_counts_exact(
    make_ring: Callable[..., FrameRing], spawn: Callable[..., Any]
) -> None:
    """Kill a reader at each of its header stores in turn: no frame is lost or counted twice."""
    deaths = 0
    for store in itertools.count():
        ring = make_ring(slots=3, width=16, height=8)
        writer = ring.writer()
        for seq in (1, 2):
            _flood_frame(writer, seq)
        process, conn = spawn(ring_workers.reader_killed_at_store, ring.spec, store)
        report = _outcome_of_killable(process, conn)
        _flood_frame(writer, 3)
        seqs = [] if report is None else [report[1]]
        with ring.reader() as successor:
            while (frame := successor.read()) is not None:
                assert ring_workers.frame_problem(frame) is None
                seqs.append(frame.seq)
        stats = ring.stats()
        assert seqs[-1] == 3 and stats.dropped == 0, f"killed at store {store}"
        assert stats.written == stats.read + stats.dropped, f"killed at store {store}: {stats}"
        writer.close()
        if report is not None:
            break
        deaths += 1
    assert deaths >= 3  # pin, record, read_seq, read count


def test_rings_of_a_killed_owner_are_swept(
    make_ring: Callable[..., FrameRing], prefix: str, spawn: Callable[..., Any]
) -> None:
    live = make_ring()  # owned by this (living) process: must survive a dead-owner sweep
    owner, conn = spawn(ring_workers.ring_owner, prefix)
    names = recv(conn)
    assert all(f"-{owner.pid}-" in name for name in names)
    os.kill(owner.pid, signal.SIGKILL)
    owner.join(30)
    try:
        assert list_regions(prefix) == sorted([*names, live.name])
        assert sweep(prefix, dead_only=True) == sorted(names)
        assert list_regions(prefix) == [live.name]
    finally:
        # The child shared this process's resource tracker; forget its registrations so the
        # tracker does not try to remove the (already swept) segments again at exit.
        for name in names:
            resource_tracker.unregister("/" + name, "shared_memory")
