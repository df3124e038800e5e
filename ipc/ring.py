"""Shared-memory frame ring: one producer, one consumer, live-video policy, zero-copy reads.

One ring per stream and direction. The parent creates it (``FrameRing.create``) and unlinks it;
the producing and consuming workers map it (``FrameRing.attach``) and take the ``writer()`` and
``reader()`` roles. Frames never travel through a pipe: the producer writes pixels into a slot and
the consumer copies them out (``read()``) or reads them in place (``read(copy=False)``).

Layout (all header fields little-endian int64)::

    bytes 0-63      static: magic, version, slots, pixel format, max width/height, slot
                    capacity, stage count (written once by the creator)
    bytes 64-127    producer's line: write_seq (last published sequence), dropped, writer pid,
                    dropped count before the slot claim in progress
    bytes 128-191   consumer's line: read_seq (last sequence consumed), read count, pinned slot,
                    reader pid, waiting flag, read_seq and read count before the read in progress
    192 + i*192     slot i header: lock, seq, index, pts, time base num/den, width, height,
                    pixel format, flags, payload bytes, stamps[NUM_STAGES]
    page-aligned    slot i payload (capacity rounded up to 4 KiB)

Every shared field has exactly one writing side, so no atomic read-modify-write is needed.

Live policy. The producer never blocks. It writes each frame into the oldest slot that the consumer
has not pinned: a free slot, else an already-read frame, else the oldest unread frame, which is then
dropped and counted in ``dropped``. Sequence numbers start at 1 and grow by one per frame; the
consumer reads in sequence order and ``Frame.missed`` tells it how many frames it lost just
before this one. Once the consumer has caught up, ``written == read + dropped``, exactly, even
after either side was killed (see "Death of a role").

Torn reads. Each slot has a seqlock word: odd while the producer writes the slot, even (and larger)
once the frame is published. The consumer only takes a slot whose lock was even and unchanged
around its reading of the slot's sequence number, and then *pins* the slot before touching the
pixels: it stores the slot index in ``pin``, issues a full memory barrier and checks that the lock
has not moved. The producer, symmetrically, makes the lock odd, issues a full barrier and reads
``pin``; if the consumer pinned that slot it restores the lock and picks another slot. This is the
store-buffer (Dekker) handshake: with a full barrier on both sides at least one party sees the
other's store, so either the consumer sees the odd lock and gives the slot up, or the producer sees
the pin and never writes there. A pinned slot is therefore never written, which makes copying reads
and zero-copy views safe without retries, and makes the drop count exact (a frame the consumer has
pinned is never counted as dropped; one that was overwritten was never delivered).

Memory ordering. Header words are written and read through a ``memoryview`` cast to int64: one
aligned 8-byte ``mov`` each, so a word is never torn. Pixels are copied by numpy (memcpy). We rely
on x86-64's TSO model: stores become visible in program order (pixels before the even lock, the
lock before ``write_seq``) and loads are not reordered with older loads; glibc's memcpy ends its
non-temporal-store path with ``sfence``, so large copies are ordered too. The one reordering TSO
allows, a later load passing an earlier store, is what the pin handshake has to prevent: the full
barrier is an uncontended ``threading.Lock`` acquire/release, which executes lock-prefixed
instructions (full barriers on x86). Weakly ordered CPUs (aarch64) would need explicit
acquire/release barriers around every header access; the ring warns there.

Death of a role. A process may die (``kill -9``) between any two stores, and the next process to
take its role repairs what it left, so the counters stay exact. Each role writes, before the stores
of one step, a record of its counters as they were, so that its successor can tell a step that
never happened from one that half happened:

- A frame counts as written when ``write_seq`` reaches it. A slot left odd holds either the frame
  being written (its sequence is above ``write_seq``: it was never published and is discarded) or
  the old frame the dead writer was about to replace (its pixels are untouched): if ``dropped``
  still equals the record taken before the claim, that frame was not counted as dropped and is
  given back to the reader; otherwise it was counted and the slot is emptied. A slot that was
  published but whose ``write_seq`` store never happened holds a frame that was never written by
  that definition, and is emptied.
- A frame counts as read when ``read_seq`` reaches it. A reader that died after advancing
  ``read_seq`` but before counting the frame is detected by the records (``read_seq`` moved,
  ``read count`` did not) and the successor counts it.

Wake-ups. The consumer binds ``ipc.wakeup.WakeListener`` on ``"<name>.r"`` (which also makes it the
only reader). Before it sleeps it sets the waiting flag, issues a full barrier and looks at the
ring once more; after each publish the producer issues a full barrier and sends a wake-up only if
the flag is set: the same handshake as the pin, so no wake-up is lost, and a busy consumer costs
the producer no system call. ``wait()`` blocks in ``poll`` and ``wait_async()`` in the event loop;
neither spins. The writer holds ``"<name>.w"`` the same way, so a second writer is refused, and a
role is freed by the kernel when its process dies.
"""

from __future__ import annotations

import logging
import os
import platform
import struct
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import msgspec
import numpy as np

from ipc import pixfmt
from ipc.frame import NUM_STAGES, Frame, Stage
from ipc.pixfmt import PixelFormat, RingPixelFormat
from ipc.shm import PREFIX, Direction, SharedRegion, ring_name, validate_name
from ipc.wakeup import AddressInUse, WakeListener, WakeSender

log = logging.getLogger(__name__)

MAX_SLOTS = 64
MIN_SLOTS = 2  # one slot may be pinned by the consumer; the producer always needs another
MAGIC = int.from_bytes(b"CBYOCRNG", "little")
VERSION = 2

# Ring header, as int64 indices.
_MAGIC, _VERSION, _SLOTS, _FORMAT, _MAX_W, _MAX_H, _CAPACITY, _STAGES = range(8)
_WRITE_SEQ, _DROPPED, _WRITER_PID, _DROPPED_BEFORE_CLAIM = 8, 9, 10, 11  # producer's cache line
_READ_SEQ, _READ_COUNT, _PIN, _READER_PID, _WAITING = 16, 17, 18, 19, 20  # consumer's line
_READ_SEQ_BEFORE, _READ_COUNT_BEFORE = 21, 22  # the consumer's record before each read
_NO_PIN = -1

SLOT_TABLE_OFFSET = 192
SLOT_HEADER_SIZE = 192
PAGE = 4096
# Slot header, as int64 indices from the slot header's start.
_S_LOCK, _S_SEQ, _S_FIELDS = 0, 1, 2
_S_STAMPS = 11
# index, pts, tb num, tb den, width, height, format, flags, nbytes, then the stamps: one pack
# or unpack moves a whole header.
_HEADER = struct.Struct(f"<9q{NUM_STAGES}q")
assert (_S_STAMPS + NUM_STAGES) * 8 <= SLOT_HEADER_SIZE and _S_FIELDS + 9 == _S_STAMPS
_NO_STAMPS = (0,) * NUM_STAGES
_UINT8 = np.dtype(np.uint8)
_FORMATS = {int(f): f for f in PixelFormat}

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_INT32_MAX = 2**31 - 1

_EMPTY = np.zeros(0, dtype=np.uint8)
_EMPTY.flags.writeable = False

_FENCE_LOCK = threading.Lock()
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")


def _full_fence() -> None:
    # lock-prefixed instructions (the lock's CAS and release) are full barriers on x86;
    # see the module docstring.
    _FENCE_LOCK.acquire()
    _FENCE_LOCK.release()


class RingError(RuntimeError):
    """A ring cannot be used as asked (mismatched spec, role taken, corrupt header)."""


class RoleTaken(RingError):
    """The ring already has a writer (or a reader)."""


class FrameTooLarge(ValueError):
    """A frame needs more bytes than the ring's slots hold."""


def _check_int(label: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{label} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{label} must be between {low} and {high}, got {value}")
    return int(value)


class RingSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Everything needed to create or attach a ring; small enough to travel in control messages.

    Slots hold frames up to ``max_width`` x ``max_height`` in ``pixel_format``; a frame may have
    another size or format as long as its bytes fit.
    """

    name: str
    slots: int
    max_width: int
    max_height: int
    pixel_format: RingPixelFormat
    """The parent's choice per stream (``ipc.ring_format``): ``rgb24`` when inference runs on the
    CPU, a 4:2:0 format when it runs on a GPU."""

    def __post_init__(self) -> None:
        validate_name(self.name)
        _check_int("slots", self.slots, MIN_SLOTS, MAX_SLOTS)
        pixfmt.check_dimensions(self.max_width, self.max_height)
        pixfmt.parse_pixel_format(self.pixel_format)

    @property
    def format(self) -> PixelFormat:
        """``pixel_format`` as a ``PixelFormat``."""
        return pixfmt.parse_pixel_format(self.pixel_format)

    @property
    def slot_capacity(self) -> int:
        """Payload bytes per slot: one frame of the maximum size in the ring's format."""
        return pixfmt.frame_nbytes(self.format, self.max_width, self.max_height)

    @classmethod
    def for_stream(
        cls,
        stream_id: str,
        direction: Direction | str,
        *,
        slots: int,
        max_width: int,
        max_height: int,
        pixel_format: RingPixelFormat,
        prefix: str = PREFIX,
    ) -> RingSpec:
        """A spec named after ``stream_id`` and ``direction``, owned by this process."""
        return cls(
            name=ring_name(stream_id, direction, prefix=prefix),
            slots=slots,
            max_width=max_width,
            max_height=max_height,
            pixel_format=pixel_format,
        )


class RingStats(msgspec.Struct, frozen=True, kw_only=True):
    """Counters from a ring's shared header, readable by every process that maps it."""

    written: int
    """Frames published since the ring was created."""
    read: int
    """Frames delivered to a reader."""
    dropped: int
    """Unread frames the producer overwrote (ring full: consumer behind)."""

    @property
    def unread(self) -> int:
        """Frames published and neither read nor dropped yet."""
        return self.written - self.read - self.dropped


@dataclass(frozen=True)
class _Layout:
    slots: int
    capacity: int
    stride: int
    payload_offset: int
    size: int

    @classmethod
    def of(cls, spec: RingSpec) -> _Layout:
        capacity = spec.slot_capacity
        stride = _round_up(capacity, PAGE)
        payload_offset = _round_up(SLOT_TABLE_OFFSET + spec.slots * SLOT_HEADER_SIZE, PAGE)
        return cls(
            spec.slots, capacity, stride, payload_offset, payload_offset + spec.slots * stride
        )

    def header_index(self, slot: int) -> int:
        return (SLOT_TABLE_OFFSET + slot * SLOT_HEADER_SIZE) // 8

    def payload(self, slot: int) -> int:
        return self.payload_offset + slot * self.stride


def _round_up(value: int, step: int) -> int:
    return (value + step - 1) // step * step


class FrameRing:
    """A mapped frame ring. Create it in the owning process, attach to it everywhere else.

    ``with FrameRing.create(spec) as ring:`` unlinks the ring on exit; an attached ring only
    unmaps. ``close()`` and ``unlink()`` are idempotent.
    """

    def __init__(self, spec: RingSpec, region: SharedRegion, layout: _Layout) -> None:
        self.spec = spec
        self._region = region
        self._layout = layout
        self._q: memoryview = region.buf.cast("q")
        self._bytes: np.ndarray | None = np.frombuffer(region.buf, dtype=np.uint8)
        self._roles: list[RingWriter | RingReader] = []
        if not _X86:
            log.warning(
                "ring %s: memory ordering is only established for x86-64 (running on %s)",
                spec.name,
                platform.machine(),
            )

    @classmethod
    def create(cls, spec: RingSpec) -> FrameRing:
        """Create the ring's shared memory; this process owns it and must ``unlink()`` it."""
        layout = _Layout.of(spec)
        region = SharedRegion.create(spec.name, layout.size)
        try:
            q = region.buf.cast("q")
            try:
                q[_VERSION] = VERSION
                q[_SLOTS] = spec.slots
                q[_FORMAT] = int(spec.format)
                q[_MAX_W] = spec.max_width
                q[_MAX_H] = spec.max_height
                q[_CAPACITY] = layout.capacity
                q[_STAGES] = NUM_STAGES
                q[_PIN] = _NO_PIN
                q[_MAGIC] = MAGIC  # last: a header with the magic is complete
            finally:
                q.release()
            ring = cls(spec, region, layout)
        except BaseException:
            region.close()
            region.unlink()
            raise
        log.debug(
            "ring %s created: %d slots of %d bytes (%dx%d %s)",
            spec.name,
            spec.slots,
            layout.capacity,
            spec.max_width,
            spec.max_height,
            spec.pixel_format,
        )
        return ring

    @classmethod
    def attach(cls, spec: RingSpec) -> FrameRing:
        """Map an existing ring without owning it. Raises ``RingError`` if it differs from spec."""
        layout = _Layout.of(spec)
        region = SharedRegion.attach(spec.name)
        try:
            cls._check_header(spec, region, layout)
            return cls(spec, region, layout)
        except BaseException:
            region.close()
            raise

    @staticmethod
    def _check_header(spec: RingSpec, region: SharedRegion, layout: _Layout) -> None:
        if region.size < SLOT_TABLE_OFFSET:
            raise RingError(f"shared memory {spec.name!r} is too small to be a frame ring")
        q = region.buf.cast("q")
        try:
            if q[_MAGIC] != MAGIC or q[_VERSION] != VERSION:
                raise RingError(f"shared memory {spec.name!r} is not a version {VERSION} ring")
            found = (q[_SLOTS], q[_FORMAT], q[_MAX_W], q[_MAX_H], q[_STAGES])
        finally:
            q.release()
        expected = (spec.slots, int(spec.format), spec.max_width, spec.max_height, NUM_STAGES)
        if found != expected or region.size != layout.size:
            fmt = PixelFormat(found[1]) if found[1] in set(PixelFormat) else found[1]
            raise RingError(
                f"ring {spec.name!r} was created with {found[0]} slots of "
                f"{found[2]}x{found[3]} {fmt} ({found[4]} stages), not as {spec}"
            )

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def is_owner(self) -> bool:
        return self._region.is_owner

    @property
    def closed(self) -> bool:
        return self._region.closed

    @property
    def nbytes(self) -> int:
        """Size of the shared memory region."""
        return self._layout.size

    def stats(self) -> RingStats:
        """Current counters from the shared header."""
        q = self._live_q()
        return RingStats(written=q[_WRITE_SEQ], read=q[_READ_COUNT], dropped=q[_DROPPED])

    def writer(self) -> RingWriter:
        """Become the ring's producer. Raises ``RoleTaken`` if another writer is attached."""
        writer = RingWriter(self)
        self._roles.append(writer)
        return writer

    def reader(self) -> RingReader:
        """Become the ring's consumer. Raises ``RoleTaken`` if another reader is attached."""
        reader = RingReader(self)
        self._roles.append(reader)
        return reader

    def close(self) -> None:
        """Close this process's writer/reader and unmap the ring (idempotent)."""
        if self._region.closed:
            return
        for role in self._roles:
            role.close()
        self._roles.clear()
        self._bytes = None
        self._q.release()
        self._region.close()

    def unlink(self) -> None:
        """Remove the ring's shared memory (owner only; idempotent)."""
        self._region.unlink()

    def __enter__(self) -> FrameRing:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
        if self.is_owner:
            self.unlink()

    def __repr__(self) -> str:
        role = "owner" if self.is_owner else "attached"
        return f"<FrameRing {self.name} {role}{' closed' if self.closed else ''}>"

    def _live_q(self) -> memoryview:
        if self._region.closed:
            raise ValueError(f"ring {self.name!r} is closed")
        return self._q

    def _payload_views(self) -> list[np.ndarray]:
        assert self._bytes is not None
        layout = self._layout
        return [
            self._bytes[layout.payload(i) : layout.payload(i) + layout.capacity]
            for i in range(layout.slots)
        ]


def _claim_role(ring: FrameRing, key: str, role: str) -> WakeListener:
    try:
        return WakeListener(key)
    except AddressInUse:
        raise RoleTaken(f"ring {ring.name!r} already has a {role}") from None


class RingWriter:
    """The producing end of a ring (one per ring at a time). Never blocks."""

    def __init__(self, ring: FrameRing) -> None:
        q = ring._live_q()
        self._ring = ring
        self._role = _claim_role(ring, f"{ring.name}.w", "writer")
        self._wake = WakeSender(f"{ring.name}.r")
        self._q = q
        self._buf = ring._region.buf
        self._format = ring.spec.format
        self._capacity = ring._layout.capacity
        self._slots = range(ring._layout.slots)
        self._payloads = ring._payload_views()
        self._shaped: dict[tuple[int, tuple[int, ...]], np.ndarray] = {}
        self._geometry: dict[tuple[PixelFormat, tuple[int, ...]], tuple[int, int]] = {}
        self._headers = [ring._layout.header_index(i) for i in self._slots]
        # Shadow copies of what only this writer changes: slot locks and sequences.
        self._locks: list[int] = []
        self._seqs: list[int] = []
        for h in self._headers:
            lock, seq = self._repair_slot(h)
            self._locks.append(lock)
            self._seqs.append(seq)
        self._next_seq = q[_WRITE_SEQ] + 1
        self._dropped = q[_DROPPED]
        q[_WRITER_PID] = os.getpid()
        self._pending: Reservation | None = None
        self._time_base: tuple[object, int, int] = (None, 0, 0)

    def _repair_slot(self, h: int) -> tuple[int, int]:
        """Undo what a killed writer left half done in one slot; return its ``(lock, seq)``.

        See "Death of a role" in the module docstring.
        """
        q = self._q
        lock = q[h + _S_LOCK]
        seq = q[h + _S_SEQ]
        written = q[_WRITE_SEQ]
        if lock & 1:
            old_frame_intact = 0 < seq <= written
            if not (old_frame_intact and q[_DROPPED] == q[_DROPPED_BEFORE_CLAIM]):
                seq = 0  # the unpublished new frame, or an old one already counted as dropped
            q[h + _S_SEQ] = seq
            lock += 1
            q[h + _S_LOCK] = lock
        elif seq > written:
            seq = 0  # published in the slot but not in write_seq: never written
            q[h + _S_SEQ] = seq
            lock += 2
            q[h + _S_LOCK] = lock
        return lock, seq

    @property
    def ring(self) -> FrameRing:
        return self._ring

    @property
    def closed(self) -> bool:
        return self._role.closed

    @property
    def next_seq(self) -> int:
        """Sequence number the next committed frame will get."""
        return self._next_seq

    def write(
        self,
        image: np.ndarray | Sequence[np.ndarray],
        *,
        pts: int,
        time_base: Fraction | tuple[int, int],
        pixel_format: PixelFormat | str | None = None,
        index: int | None = None,
        flags: int = 0,
        stamps: np.ndarray | Sequence[int] | Mapping[Stage, int] | None = None,
        stamp: Stage | None = None,
    ) -> int:
        """Copy one frame into the ring and publish it; return its sequence number.

        ``image`` is the frame's packed array (``(h, w, 3)`` rgb24, ``(h * 3 // 2, w)`` 4:2:0) or
        its planes (any strides). ``pixel_format`` defaults to the ring's. ``stamps`` are carried
        in the header (e.g. an input frame's ``stamps``); ``stamp`` additionally records that
        stage at the moment of publishing. Raises ``FrameTooLarge`` if the frame does not fit.
        """
        fmt = self._format if pixel_format is None else pixfmt.parse_pixel_format(pixel_format)
        if isinstance(image, np.ndarray):
            arrays: tuple[np.ndarray, ...] = (image,)
            # Validated geometry per shape: frames of a stream rarely change size.
            geometry = self._geometry.get((fmt, image.shape))
            if geometry is None:
                geometry = pixfmt.geometry_of(fmt, image)
                if len(self._geometry) >= 64:
                    self._geometry.clear()
                self._geometry[(fmt, image.shape)] = geometry
            width, height = geometry
        else:
            arrays = tuple(image)
            width, height = pixfmt.geometry_of(fmt, arrays)
        for array in arrays:
            if array.dtype is not _UINT8 and array.dtype != _UINT8:
                raise ValueError(f"pixels must be uint8, got {array.dtype}")
        slot, seq, base, data = self._begin(
            width, height, fmt, pts, time_base, index, flags, stamps
        )
        try:
            if isinstance(image, np.ndarray):
                np.copyto(self._shaped_view(slot, data, image.shape), image)
            else:
                targets = pixfmt.plane_views(data, fmt, width, height)
                for target, plane in zip(targets, arrays, strict=True):
                    np.copyto(target, plane)
        except BaseException:
            self._discard(slot, base)
            raise
        return self._publish(slot, seq, base, stamp)

    def reserve(
        self,
        width: int,
        height: int,
        *,
        pts: int,
        time_base: Fraction | tuple[int, int],
        pixel_format: PixelFormat | str | None = None,
        index: int | None = None,
        flags: int = 0,
        stamps: np.ndarray | Sequence[int] | Mapping[Stage, int] | None = None,
    ) -> Reservation:
        """Take a slot to fill in place (no intermediate copy); publish it with ``commit()``.

        Use as a context manager: the frame is committed when the block ends normally and
        discarded when it raises. Only one reservation may be open at a time, and ``write``
        cannot be used while it is.
        """
        fmt = self._format_of(pixel_format)
        slot, seq, base, data = self._begin(
            width, height, fmt, pts, time_base, index, flags, stamps
        )
        reservation = Reservation(self, slot, seq, base, fmt, width, height, data)
        self._pending = reservation
        return reservation

    def _shaped_view(self, slot: int, data: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """``data.reshape(shape)``, cached per slot and shape (frames rarely change size)."""
        key = (slot, shape)
        view = self._shaped.get(key)
        if view is None:
            if len(self._shaped) >= 64:
                self._shaped.clear()
            view = self._shaped[key] = data.reshape(shape)
        return view

    def _format_of(self, pixel_format: PixelFormat | str | None) -> PixelFormat:
        if pixel_format is None:
            return self._format
        return pixfmt.parse_pixel_format(pixel_format)

    def _begin(
        self,
        width: int,
        height: int,
        fmt: PixelFormat,
        pts: int,
        time_base: Fraction | tuple[int, int],
        index: int | None,
        flags: int,
        stamps: np.ndarray | Sequence[int] | Mapping[Stage, int] | None,
    ) -> tuple[int, int, int, np.ndarray]:
        """Validate a frame, claim its slot and write its header: ``(slot, seq, lock, bytes)``."""
        if self._role.closed:
            raise ValueError(f"writer of ring {self._ring.name!r} is closed")
        if self._pending is not None:
            raise RuntimeError(f"ring {self._ring.name!r}: a reservation is still open")
        nbytes = pixfmt.frame_nbytes(fmt, width, height)
        if nbytes > self._capacity:
            spec = self._ring.spec
            raise FrameTooLarge(
                f"a {width}x{height} {fmt} frame needs {nbytes} bytes; ring {spec.name!r} slots "
                f"hold {self._capacity} ({spec.max_width}x{spec.max_height} {spec.pixel_format})"
            )
        if type(pts) is not int or not _INT64_MIN <= pts <= _INT64_MAX:
            pts = _check_int("pts", pts, _INT64_MIN, _INT64_MAX)
        tb_num, tb_den = self._time_base_of(time_base)
        if flags:
            flags = _check_int("flags", flags, 0, 2**32 - 1)
        seq = self._next_seq
        if index is None:
            index = seq - 1
        elif type(index) is not int or not _INT64_MIN <= index <= _INT64_MAX:
            index = _check_int("index", index, _INT64_MIN, _INT64_MAX)
        stamp_values = _stamp_values(stamps)

        slot, base = self._claim_slot()
        h = self._headers[slot]
        self._q[h + _S_SEQ] = seq  # one 8-byte store: readers never see a torn sequence number
        _HEADER.pack_into(
            self._buf,
            (h + _S_FIELDS) * 8,
            index,
            pts,
            tb_num,
            tb_den,
            width,
            height,
            fmt,
            flags,
            nbytes,
            *stamp_values,
        )
        payload = self._payloads[slot]
        return slot, seq, base, payload if nbytes == self._capacity else payload[:nbytes]

    def _claim_slot(self) -> tuple[int, int]:
        """Make the oldest unpinned slot odd (being written); count a drop if it was unread."""
        q = self._q
        seqs = self._seqs
        # Read by a successor if we die before this claim is finished (see "Death of a role").
        q[_DROPPED_BEFORE_CLAIM] = self._dropped
        while True:
            pinned = q[_PIN]
            slot = -1
            for candidate in self._slots:
                if candidate != pinned and (slot < 0 or seqs[candidate] < seqs[slot]):
                    slot = candidate
            h = self._headers[slot]
            base = self._locks[slot]
            q[h + _S_LOCK] = base + 1
            _full_fence()  # the odd lock must be visible before we look at the pin
            if q[_PIN] == slot:
                q[h + _S_LOCK] = base  # the reader pinned it meanwhile: leave it alone
                continue
            old = seqs[slot]
            if old and old > q[_READ_SEQ]:
                self._dropped += 1
                q[_DROPPED] = self._dropped
            return slot, base

    def _publish(self, slot: int, seq: int, base: int, stamp: Stage | None) -> int:
        q = self._q
        h = self._headers[slot]
        if stamp is not None:
            q[h + _S_STAMPS + stamp] = time.monotonic_ns()
        lock = base + 2
        q[h + _S_LOCK] = lock  # TSO: pixels and header are visible before the even lock
        self._locks[slot] = lock
        self._seqs[slot] = seq
        q[_WRITE_SEQ] = seq
        self._next_seq = seq + 1
        # Wake the reader only if it sleeps: it sets WAITING, fences, then looks at the ring;
        # we store write_seq, fence, then look at WAITING. One of us sees the other's store.
        _full_fence()
        if q[_WAITING]:
            self._wake.notify()
        return seq

    def _discard(self, slot: int, base: int) -> None:
        q = self._q
        h = self._headers[slot]
        q[h + _S_SEQ] = 0  # the slot is empty now; its sequence number will be reused
        lock = base + 2
        q[h + _S_LOCK] = lock
        self._locks[slot] = lock
        self._seqs[slot] = 0

    def _finish(self, reservation: Reservation, stamp: Stage | None) -> int:
        if self._pending is not reservation or self._role.closed:
            raise RuntimeError("reservation already committed or aborted")
        self._pending = None
        return self._publish(reservation.slot, reservation.seq, reservation.base_lock, stamp)

    def _cancel(self, reservation: Reservation) -> None:
        if self._pending is reservation:
            self._pending = None
            if not self._role.closed:
                self._discard(reservation.slot, reservation.base_lock)

    def _time_base_of(self, time_base: Fraction | tuple[int, int]) -> tuple[int, int]:
        cached, num, den = self._time_base
        if time_base is cached or time_base == cached:
            return num, den
        if isinstance(time_base, Fraction):
            num, den = time_base.numerator, time_base.denominator
        elif isinstance(time_base, tuple) and len(time_base) == 2:
            num, den = time_base
        else:
            raise ValueError(f"time_base must be a Fraction or (num, den), got {time_base!r}")
        num = _check_int("time base numerator", num, 1, _INT32_MAX)
        den = _check_int("time base denominator", den, 1, _INT32_MAX)
        self._time_base = (time_base, num, den)
        return num, den

    def close(self) -> None:
        """Give up the writer role (idempotent). An open reservation is discarded."""
        if self._role.closed:
            return
        if self._pending is not None:
            self._cancel(self._pending)
        self._q[_WRITER_PID] = 0
        self._payloads = []
        self._shaped.clear()
        self._wake.close()
        self._role.close()

    def __enter__(self) -> RingWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Reservation:
    """A slot being filled in place by the writer. Commit publishes it; abort discards it."""

    def __init__(
        self,
        writer: RingWriter,
        slot: int,
        seq: int,
        base_lock: int,
        pixel_format: PixelFormat,
        width: int,
        height: int,
        data: np.ndarray,
    ) -> None:
        self._writer = writer
        self.slot = slot
        self.seq = seq
        """Sequence number the frame gets when committed."""
        self.base_lock = base_lock
        self.pixel_format = pixel_format
        self.width = width
        self.height = height
        self.data = data
        """The slot's bytes for this frame (1-D uint8, writable; emptied by commit/abort)."""
        self._planes: tuple[np.ndarray, ...] | None = None
        self.stamp_on_commit: Stage | None = None
        """Stage to stamp with the commit time when the ``with`` block commits."""

    @property
    def planes(self) -> tuple[np.ndarray, ...]:
        """Writable views of each plane (``()`` after commit/abort)."""
        if self._planes is None:
            self._planes = pixfmt.plane_views(self.data, self.pixel_format, self.width, self.height)
        return self._planes

    @property
    def array(self) -> np.ndarray:
        """The writable pixels as one array (see ``Frame.array``)."""
        shape = pixfmt.packed_shape(self.pixel_format, self.width, self.height)
        if shape is None:
            raise ValueError(
                f"a {self.width}x{self.height} {self.pixel_format} frame has no single-array form"
            )
        return self.data.reshape(shape)

    def commit(self, *, stamp: Stage | None = None) -> int:
        """Publish the frame (optionally stamping ``stamp`` now); return its sequence number."""
        self._drop_views()
        return self._writer._finish(self, stamp if stamp is not None else self.stamp_on_commit)

    def abort(self) -> None:
        """Discard the frame; the slot becomes empty (no-op after commit or abort)."""
        self._drop_views()
        self._writer._cancel(self)

    def _drop_views(self) -> None:
        # The slot is no longer ours to write: drop the views so they cannot be used by mistake.
        self.data = _EMPTY
        self._planes = ()

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, exc_type: object, *exc_info: object) -> None:
        if self._writer._pending is not self:
            return
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class RingReader:
    """The consuming end of a ring (one per ring at a time)."""

    def __init__(self, ring: FrameRing) -> None:
        q = ring._live_q()
        self._ring = ring
        self._wake = _claim_role(ring, f"{ring.name}.r", "reader")
        self._q = q
        self._buf = ring._region.buf
        self._capacity = ring._layout.capacity
        self._payloads = ring._payload_views()
        for payload in self._payloads:
            payload.flags.writeable = False  # what readers get must not write into the ring
        self._headers = [ring._layout.header_index(i) for i in range(ring._layout.slots)]
        self._undrained = False
        # Only one reader exists (the role is held), so a pin or a waiting flag left by a killed
        # one is stale.
        q[_PIN] = _NO_PIN
        q[_WAITING] = 0
        if q[_READ_SEQ] != q[_READ_SEQ_BEFORE] and q[_READ_COUNT] == q[_READ_COUNT_BEFORE]:
            # A reader died between taking a frame and counting it: it was read.
            q[_READ_COUNT] = q[_READ_COUNT_BEFORE] + 1
        self._read_seq = q[_READ_SEQ]
        self._read_count = q[_READ_COUNT]
        q[_READER_PID] = os.getpid()
        self._held: Frame | None = None
        self._time_bases: dict[tuple[int, int], Fraction] = {}
        self.missed = 0
        """Frames this reader lost to the live policy (sum of ``Frame.missed``)."""

    @property
    def ring(self) -> FrameRing:
        return self._ring

    @property
    def closed(self) -> bool:
        return self._wake.closed

    @property
    def last_seq(self) -> int:
        """Sequence number of the last frame consumed (0 before the first)."""
        return self._read_seq

    def read(self, *, copy: bool = True, stamp: Stage | None = None) -> Frame | None:
        """The next frame in sequence order, or ``None`` if none is ready. Never blocks.

        ``copy=True`` returns a frame that owns its pixels. ``copy=False`` returns a zero-copy,
        read-only view that pins its slot until ``frame.release()``; no other frame can be read
        while a view is held. ``stamp`` records that stage (now) in the returned frame's stamps.
        """
        self._check_open()
        if self._held is not None:
            raise RuntimeError(
                f"ring {self._ring.name!r}: release the frame view (seq {self._held.seq}) "
                "before reading another frame"
            )
        claimed = self._claim()
        if claimed is None:
            return None
        slot, seq = claimed
        q = self._q
        header = _HEADER.unpack_from(self._buf, (self._headers[slot] + _S_FIELDS) * 8)
        index, pts, tb_num, tb_den, width, height, code, flags, nbytes = header[:9]
        fmt = _FORMATS.get(code)
        try:
            if fmt is None:
                raise ValueError(f"unknown pixel format code {code}")
            if nbytes != pixfmt.frame_nbytes(fmt, width, height) or nbytes > self._capacity:
                raise ValueError(f"{width}x{height} {fmt} in {nbytes} bytes")
        except ValueError as exc:
            q[_PIN] = _NO_PIN
            raise RingError(
                f"ring {self._ring.name!r}: corrupt header in slot {slot}: {exc}"
            ) from exc
        payload = self._payloads[slot]
        source = payload if nbytes == self._capacity else payload[:nbytes]
        data = source.copy() if copy else source
        missed = seq - self._read_seq - 1
        # Consumed: recorded before the pin is dropped, so a writer that sees the slot unpinned
        # also sees read_seq >= seq and does not count the frame as dropped.
        # The record first, so that a successor can finish the count if we die in between.
        q[_READ_SEQ_BEFORE] = self._read_seq
        q[_READ_COUNT_BEFORE] = self._read_count
        self._read_seq = seq
        self._read_count += 1
        self.missed += missed
        q[_READ_SEQ] = seq
        q[_READ_COUNT] = self._read_count
        release = None
        if copy:
            q[_PIN] = _NO_PIN
        else:
            release = self._release_view
        time_base = self._time_bases.get((tb_num, tb_den)) or self._fraction(tb_num, tb_den)
        frame = Frame(
            seq=seq,
            index=index,
            pts=pts,
            time_base=time_base,
            width=width,
            height=height,
            pixel_format=fmt,
            flags=flags,
            stamps=header[9:],
            data=data,
            missed=missed,
            release=release,
        )
        if stamp is not None:
            frame.stamp(stamp)
        if not copy:
            self._held = frame
        return frame

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a frame is ready to read or ``timeout`` seconds pass; return whether one is.

        Sleeps in ``poll`` on the wake-up socket: no CPU is used while the ring is idle.
        """
        self._check_open()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._locate() is not None or self._announce_sleep():
                return True
            remaining = None if deadline is None else deadline - time.monotonic()
            woke = (remaining is None or remaining > 0) and self._wake.wait(remaining)
            if not self._woke(woke):
                return self._locate() is not None

    async def wait_async(self, timeout: float | None = None) -> bool:
        """Like ``wait`` but suspends the coroutine (event loop ``add_reader``), never blocks."""
        self._check_open()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._locate() is not None or self._announce_sleep():
                return True
            remaining = None if deadline is None else deadline - time.monotonic()
            woke = (remaining is None or remaining > 0) and await self._wake.wait_async(remaining)
            if not self._woke(woke):
                return self._locate() is not None

    def _announce_sleep(self) -> bool:
        """Tell the writer we are about to sleep; return True (and cancel) if a frame is ready."""
        if self._undrained:
            # Wake-ups are consumed only now, off the path from a wake-up to the frame.
            self._wake.drain()
            self._undrained = False
        self._q[_WAITING] = 1
        _full_fence()  # pairs with the writer's fence between write_seq and reading WAITING
        if self._locate() is not None:
            self._q[_WAITING] = 0
            return True
        return False

    def _woke(self, woke: bool) -> bool:
        """After a sleep: clear WAITING, consume wake-ups; return whether to look again."""
        if self._wake.closed:
            raise ValueError(f"reader of ring {self._ring.name!r} was closed while waiting")
        self._q[_WAITING] = 0
        if woke:
            self._undrained = True
        return woke

    async def read_async(
        self, *, copy: bool = True, stamp: Stage | None = None, timeout: float | None = None
    ) -> Frame | None:
        """Wait (in the event loop) for the next frame and read it; ``None`` on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            frame = self.read(copy=copy, stamp=stamp)
            if frame is not None:
                return frame
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            await self.wait_async(remaining)

    def _locate(self) -> tuple[int, int, int] | None:
        """Find the next frame to read: ``(slot, seq, lock)`` of the lowest unread sequence.

        Only frames up to ``write_seq`` (loaded first) count: every one of them was published
        before that load, so each is either visible now or was overwritten (and counted as
        dropped). A slot being written whose old sequence is below the best candidate makes us
        wait instead of skipping it: the writer may be about to give it back (pin handshake).
        """
        q = self._q
        written = q[_WRITE_SEQ]
        after = self._read_seq
        if written <= after:
            return None
        best: tuple[int, int, int] | None = None
        lowest_busy = None
        for slot, h in enumerate(self._headers):
            lock = q[h + _S_LOCK]
            seq = q[h + _S_SEQ]
            stable = not lock & 1 and q[h + _S_LOCK] == lock
            if not after < seq <= written:
                continue
            if not stable:
                if lowest_busy is None or seq < lowest_busy:
                    lowest_busy = seq
            elif best is None or seq < best[1]:
                best = (slot, seq, lock)
        if best is None or (lowest_busy is not None and lowest_busy < best[1]):
            return None
        return best

    def _claim(self) -> tuple[int, int] | None:
        """Pin the next frame's slot; return ``(slot, seq)`` or ``None`` if nothing is ready."""
        q = self._q
        while True:
            found = self._locate()
            if found is None:
                return None
            slot, seq, lock = found
            h = self._headers[slot]
            q[_PIN] = slot
            _full_fence()  # the pin must be visible before we re-check the lock
            if q[h + _S_LOCK] == lock and q[h + _S_SEQ] == seq:
                return slot, seq
            q[_PIN] = _NO_PIN  # overwritten under us: that frame is dropped, look again

    def _release_view(self) -> None:
        self._held = None
        if not self._wake.closed:
            self._q[_PIN] = _NO_PIN

    def _fraction(self, num: int, den: int) -> Fraction:
        if len(self._time_bases) > 16:
            self._time_bases.clear()
        fraction = self._time_bases[(num, den)] = Fraction(num, den)
        return fraction

    def _check_open(self) -> None:
        if self._wake.closed:
            raise ValueError(f"reader of ring {self._ring.name!r} is closed")

    def close(self) -> None:
        """Give up the reader role (idempotent); a held view is released first."""
        if self._wake.closed:
            return
        if self._held is not None:
            self._held.release()
        self._q[_READER_PID] = 0
        self._q[_WAITING] = 0
        self._payloads = []
        self._wake.close()

    def __enter__(self) -> RingReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _stamp_values(
    stamps: np.ndarray | Sequence[int] | Mapping[Stage, int] | None,
) -> Sequence[int]:
    if stamps is None:
        return _NO_STAMPS
    if type(stamps) is list or type(stamps) is tuple:
        values: Sequence[int] = stamps
    elif isinstance(stamps, np.ndarray):
        values = stamps.tolist()
    elif isinstance(stamps, Mapping):
        mapped = [0] * NUM_STAGES
        for stage, value in stamps.items():
            mapped[Stage(stage)] = value
        return mapped
    else:
        values = list(stamps)
    if len(values) != NUM_STAGES:
        raise ValueError(f"stamps must have {NUM_STAGES} values (one per Stage), got {len(values)}")
    return values
