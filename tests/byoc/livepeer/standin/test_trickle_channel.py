"""Segment buffer and channel ring, in-process (the HTTP behaviour is in test_server.py)."""

from __future__ import annotations

import asyncio

from byoc.livepeer.standin.trickle_channel import Channel, Segment


def test_segment_reads_by_offset_without_copies():
    seg = Segment(0)
    big = b"a" * 10_000
    seg.append(big)
    seg.append(b"b" * 10_000)
    first = seg.read_from(0)
    assert first is big  # the stored chunk itself
    tail = seg.read_from(9_000)
    assert isinstance(tail, memoryview) and bytes(tail) == b"a" * 1_000
    assert bytes(seg.read_from(10_000)) == b"b" * 10_000
    assert seg.read_from(20_000) == b""
    assert seg.size == 20_000


def test_small_writes_are_coalesced_and_offsets_stay_valid():
    seg = Segment(0)
    for i in range(1000):
        seg.append(bytes([i % 256]))
    assert len(seg._chunks) < 1000 / 100
    out = b""
    offset = 0
    while data := seg.read_from(offset):
        out += bytes(data)
        offset += len(data)
    assert out == bytes(i % 256 for i in range(1000))


async def test_waiters_wake_on_data_close_and_timeout():
    seg = Segment(3)
    waiter = asyncio.create_task(seg.wait_beyond(0))
    await asyncio.sleep(0)
    assert seg.readers_waiting == 1
    seg.append(b"x")
    await waiter
    assert seg.readers_waiting == 0
    await asyncio.wait_for(seg.wait_beyond(1, timeout=0.01), 1)  # returns on timeout
    assert seg.readers_waiting == 0
    waiter = asyncio.create_task(seg.wait_beyond(1))
    await asyncio.sleep(0)
    seg.close()
    await waiter
    seg.append(b"ignored after close")
    assert seg.size == 1


def test_close_stops_the_writer_and_takeover_stops_the_previous_one():
    seg = Segment(0)
    stopped: list[str] = []
    seg.attach_writer(lambda: stopped.append("first"))
    seg.attach_writer(lambda: stopped.append("second"))
    assert stopped == ["first"]
    seg.close()
    assert stopped == ["first", "second"]


def test_ring_resolution_and_eviction():
    ch = Channel("c", "video/MP2T")
    assert ch.resolve_read_seq(-1) == 0 and ch.resolve_read_seq(-2) == 0
    for seq in range(7):
        seg = ch.segment_for_write(seq)
        ch.note_first_byte(seg)
        seg.append(b"s")
        seg.close()
    assert ch.next_write == 7
    assert ch.resolve_read_seq(-1) == 7 and ch.resolve_read_seq(-2) == 6
    assert ch.segment(0) is None and ch.segment(1) is None
    assert all(ch.segment(s) is not None for s in range(2, 7))
    assert ch.buffered_bytes == 5
    assert ch.segment_for_read(9) is None  # too far ahead
    assert ch.segment_for_read(7) is not None  # the next write: pre-created in seq 2's slot
    assert ch.segment(2) is None and ch.buffered_bytes == 4


def test_write_reuses_fresh_segment_but_replaces_written_one():
    ch = Channel("c", "x")
    waiting = ch.segment_for_read(0)
    assert ch.segment_for_write(0) is waiting  # readers already parked on it get the data
    waiting.append(b"data")
    replacement = ch.segment_for_write(0)
    assert replacement is not waiting and waiting.closed


def test_reset_and_close():
    ch = Channel("c", "x")
    segs = [ch.segment_for_write(s) for s in range(3)]
    assert ch.reset_before(2) == 2
    assert segs[0].closed and segs[1].closed and not segs[2].closed
    ch.close()
    assert segs[2].closed and ch.closed and ch.segment(2) is None
