"""Server-side trickle channel: a ring of live segments, each a growing list of byte chunks.

Everything here runs on one event loop (the server's), so no locks: a segment is mutated only by
its writer's POST handler and read by any number of GET handlers, each at its own offset.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import Callable

from byoc.livepeer.trickle.constants import RING_SIZE, SEQ_CURRENT, SEQ_NEXT

log = logging.getLogger(__name__)

# Chunks smaller than this are merged with a small predecessor, so a client trickling tiny
# writes cannot make a segment cost far more memory (object overhead) than its payload.
_COALESCE_BELOW = 4096


class Segment:
    """One segment: immutable ``bytes`` chunks appended by a single writer, read live by many.

    Readers address the data by byte offset and get views of the stored chunks (no copies).
    """

    __slots__ = ("_chunks", "_ends", "_waiters", "_writer_abort", "closed", "seq", "size")

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.size = 0
        self.closed = False
        self._chunks: list[bytes] = []
        self._ends: list[int] = []  # cumulative end offset of each chunk
        self._waiters: list[asyncio.Future[None]] = []
        self._writer_abort: Callable[[], None] | None = None

    @property
    def fresh(self) -> bool:
        """Open and still without a byte (pre-created for a reader, or a writer sent nothing)."""
        return not self.closed and self.size == 0

    @property
    def readers_waiting(self) -> int:
        """Readers currently parked waiting for bytes."""
        return len(self._waiters)

    def append(self, data: bytes) -> None:
        """Append one chunk and wake the readers. Ignored once the segment is closed."""
        if self.closed or not data:
            return
        n = len(data)
        if n < _COALESCE_BELOW and self._chunks and len(self._chunks[-1]) < _COALESCE_BELOW:
            self._chunks[-1] += data
            self._ends[-1] += n
        else:
            self._chunks.append(data)
            self._ends.append(self.size + n)
        self.size += n
        self._wake()

    def read_from(self, offset: int) -> bytes | memoryview:
        """The stored bytes from ``offset`` to the end of the chunk holding it (b"" if none)."""
        if offset >= self.size:
            return b""
        i = bisect.bisect_right(self._ends, offset)
        start = self._ends[i - 1] if i else 0
        chunk = self._chunks[i]
        return chunk if offset == start else memoryview(chunk)[offset - start :]

    async def wait_beyond(self, offset: int, timeout: float | None = None) -> None:
        """Return once the segment holds more than ``offset`` bytes or is closed, or after
        ``timeout`` seconds (the caller re-checks; readers use it to notice a dead client)."""
        if self.size > offset or self.closed:
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._waiters.append(fut)
        timer = loop.call_later(timeout, _resolve, fut) if timeout is not None else None
        try:
            await fut
        finally:
            if timer is not None:
                timer.cancel()
            try:  # still listed when the timer fired or the reader was cancelled
                self._waiters.remove(fut)
            except ValueError:
                pass

    def attach_writer(self, abort: Callable[[], None]) -> None:
        """Register the POST that feeds this segment; a previous idle writer is told to stop."""
        previous, self._writer_abort = self._writer_abort, abort
        if previous is not None:
            previous()

    def detach_writer(self, abort: Callable[[], None]) -> None:
        if self._writer_abort is abort:
            self._writer_abort = None

    def close(self) -> None:
        """End the segment: readers get EOF after the bytes stored so far; the writer stops."""
        if self.closed:
            return
        self.closed = True
        self._wake()
        abort, self._writer_abort = self._writer_abort, None
        if abort is not None:
            abort()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            _resolve(fut)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Channel:
    """A named stream of segments with go-livepeer's ring, sequence and lifecycle rules."""

    def __init__(self, name: str, content_type: str, *, ring_size: int = RING_SIZE) -> None:
        self.name = name
        self.content_type = content_type
        self.ring_size = ring_size
        self.next_write = 0  # seq after the most recent segment whose first byte arrived
        self.write_time = time.monotonic()  # idle clock for the sweeper
        self.closed = False
        self._ring: list[Segment | None] = [None] * ring_size

    def resolve_read_seq(self, seq: int) -> int:
        """Map the special GET seqs: -1 = next to be written, -2 = current (or 0)."""
        if seq == SEQ_NEXT:
            return self.next_write
        if seq == SEQ_CURRENT:
            return max(self.next_write - 1, 0)
        return seq

    def segment(self, seq: int) -> Segment | None:
        """The segment ``seq`` if the ring still holds it."""
        if seq < 0:
            return None
        seg = self._ring[seq % self.ring_size]
        return seg if seg is not None and seg.seq == seq else None

    def segment_for_write(self, seq: int) -> Segment:
        """The segment a POST to ``seq`` (-1 = next) writes into.

        An open segment without bytes is reused (readers may already wait on it; a retried POST
        takes over from an idle one). A segment that already has bytes or is closed is replaced,
        so a re-published seq never mixes two bodies; its current readers finish the old one.
        """
        if seq == SEQ_NEXT:
            seq = self.next_write
        slot = seq % self.ring_size
        seg = self._ring[slot]
        if seg is not None:
            if seg.seq == seq and seg.fresh:
                return seg
            seg.close()
        seg = Segment(seq)
        self._ring[slot] = seg
        return seg

    def segment_for_read(self, seq: int) -> Segment | None:
        """The segment a GET of resolved ``seq`` streams, pre-creating the next one to be written.

        None means 470 (evicted or too far ahead) or, on a closed channel, end of stream.
        """
        seg = self.segment(seq)
        if seg is None and not self.closed:
            if seq == self.next_write or (self.next_write == 0 and seq == 1):
                # Just ahead of the write head: wait for the publisher. Like go-livepeer, the
                # segment this slot held is left to its writer and readers, not closed.
                seg = Segment(seq)
                self._ring[seq % self.ring_size] = seg
        return seg

    def note_first_byte(self, seg: Segment) -> None:
        """A segment started (first byte, or an empty POST ended): move the write head.

        The head moves back when a publisher restarted from a lower seq. Finished segments
        ahead of it are then left over from the previous run; unlike go-livepeer we drop them
        (their current readers finish), so readers sent to the new head wait for new data
        instead of being served an old segment that happens to carry the same seq.
        """
        new_head = seg.seq + 1
        if new_head < self.next_write:
            for slot, old in enumerate(self._ring):
                if old is not None and old.seq >= new_head and old.closed:
                    self._ring[slot] = None
        self.next_write = new_head
        self.write_time = time.monotonic()

    def reset_before(self, seq: int) -> int:
        """Close every ring segment older than ``seq`` (publisher restart). Returns how many."""
        closed = 0
        for seg in self._ring:
            if seg is not None and seg.seq < seq and not seg.closed:
                seg.close()
                closed += 1
        return closed

    def close_segment(self, seq: int) -> bool:
        """Close one segment (publisher's abort). False if the ring does not hold it."""
        seg = self.segment(seq)
        if seg is None:
            return False
        seg.close()
        return True

    def close(self) -> None:
        """Close the channel: every segment ends and every waiter sees end of stream."""
        if self.closed:
            return
        self.closed = True
        for seg in self._ring:
            if seg is not None:
                seg.close()
        self._ring = [None] * self.ring_size
        log.info("trickle channel %s closed", self.name)

    @property
    def buffered_bytes(self) -> int:
        """Bytes held by the ring (segments still read after eviction are not counted)."""
        return sum(seg.size for seg in self._ring if seg is not None)

    def idle_for(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.write_time
