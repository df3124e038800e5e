"""The packet pacer: bursts are released at their timestamps' cadence, paced input passes
straight through, an over-full buffer catches up, markers keep their place."""

from __future__ import annotations

import asyncio
import time

import pytest

from ingest.pacing import PacketPacer
from ingest.tsdemux import ElementaryStream, EsPacket

VIDEO = ElementaryStream(0x100, 0x1B, "h264", "video")
FRAME = 3_000  # 30 fps in 90 kHz
HANG_GUARD_S = 30


def packet(index: int, *, discontinuity: bool = False) -> EsPacket:
    ts = 90_000 + index * FRAME
    return EsPacket(
        stream=VIDEO,
        data=b"",
        pts=ts,
        dts=ts,
        keyframe=index == 0,
        received_ns=0,
        segment=0,
        discontinuity=discontinuity,
    )


async def drain(pacer: PacketPacer, count: int) -> list[tuple[EsPacket, float]]:
    out: list[tuple[EsPacket, float]] = []
    for _ in range(count):
        item = await asyncio.wait_for(pacer.get(), HANG_GUARD_S)
        assert isinstance(item, EsPacket)
        out.append((item, time.monotonic()))
    return out


async def test_a_burst_is_released_no_earlier_than_its_timestamps() -> None:
    pacer = PacketPacer(2.5, jitter_s=0.0)
    for i in range(10):
        pacer.put(packet(i))
    released = await drain(pacer, 10)
    first_ts, first_at = released[0][0].dts, released[0][1]
    assert first_ts is not None
    for item, at in released:
        assert item.dts is not None
        due = (item.dts - first_ts) / 90_000
        assert at - first_at >= due - 0.002, (item.dts, at - first_at, due)
    assert [p.dts for p, _ in released] == sorted(p.dts for p, _ in released if p.dts)
    assert pacer.stats.waited == 9 and pacer.stats.catch_ups == 0


async def test_late_packets_pass_straight_through() -> None:
    """Paced input: each packet arrives at (or after) its due time and is not held."""
    now = [100.0]
    pacer = PacketPacer(2.5, clock=lambda: now[0])
    for i in range(5):
        pacer.put(packet(i))
        item = await asyncio.wait_for(pacer.get(), HANG_GUARD_S)
        assert item is not None
        now[0] += FRAME / 90_000 + 0.004  # the next one arrives a little late
    assert pacer.stats.waited == 0 and pacer.stats.released == 5


async def test_jittery_paced_input_is_never_held() -> None:
    """Packets arriving up to a jitter early or late, one at a time, pass at once; the clock
    follows them instead of keeping the worst delay it saw."""
    now = [100.0]
    pacer = PacketPacer(2.5, clock=lambda: now[0])
    offsets = [0.0, 0.03, -0.04, 0.045, -0.03, 0.0, 0.04, -0.045] * 4
    for i, offset in enumerate(offsets):
        now[0] = 100.0 + i * FRAME / 90_000 + offset
        pacer.put(packet(i))
        assert await asyncio.wait_for(pacer.get(), HANG_GUARD_S) is not None
    assert pacer.stats.waited == 0


async def test_a_discontinuity_restarts_the_clock() -> None:
    pacer = PacketPacer(2.5)
    pacer.put(packet(0))
    pacer.put(packet(3000, discontinuity=True))  # far ahead: a new source
    released = await drain(pacer, 2)
    assert pacer.stats.waited == 0, released


async def test_more_than_the_bound_catches_up() -> None:
    pacer = PacketPacer(0.2)
    for i in range(30):  # 1 s of packets into a 0.2 s buffer
        pacer.put(packet(i))
    released = await drain(pacer, 30)
    assert [p.dts for p, _ in released] == [packet(i).dts for i in range(30)]
    assert pacer.stats.catch_ups > 0


async def test_markers_keep_their_place_and_close_ends() -> None:
    pacer = PacketPacer(0)
    seen: list[str] = []
    pacer.put(packet(0))
    pacer.put(lambda: seen.append("marker"))
    pacer.put(packet(1))
    pacer.close()
    items = [await asyncio.wait_for(pacer.get(), HANG_GUARD_S) for _ in range(4)]
    assert isinstance(items[0], EsPacket) and callable(items[1]) and isinstance(items[2], EsPacket)
    assert items[3] is None
    with pytest.raises(RuntimeError):
        pacer.put(packet(2))


async def test_zero_buffer_is_off() -> None:
    pacer = PacketPacer(0)
    for i in range(10):
        pacer.put(packet(i))
    await drain(pacer, 10)
    assert pacer.stats.waited == 0


async def test_a_hiccup_does_not_hold_paced_input_for_good() -> None:
    """Decoding stalls for a few frames while the input keeps arriving at its cadence: the late
    packet moves the clock, the next ones are held a little, and then the clock drifts back
    towards the arrivals instead of holding every later packet by the stall's length."""
    now = [100.0]
    pacer = PacketPacer(2.5, clock=lambda: now[0])

    def arrive(index: int) -> None:
        now[0] = 100.0 + index * FRAME / 90_000
        pacer.put(packet(index))

    async def take() -> None:
        assert await asyncio.wait_for(pacer.get(), HANG_GUARD_S) is not None

    for i in range(20):  # paced, taken at once
        arrive(i)
        await take()
    assert pacer.stats.waited == 0
    for i in (20, 21, 22):  # the decoder stalls for three frames
        arrive(i)
    for _ in range(3):
        await take()
    assert pacer.stats.waited > 0  # what came during the stall is spread out
    arrive(23)
    waited: list[int] = []
    for i in range(24, 84):  # from now on the decoder takes a packet as the next one arrives
        arrive(i)
        await take()
        waited.append(pacer.stats.waited)
    assert waited[-1] == waited[-40], "paced packets are still held long after the stall"
    assert pacer.stats.clock_drift_s > 0


async def test_whole_segments_never_move_the_clock_back() -> None:
    """A gateway that writes 2 s segments whole: each arrives as a burst two seconds after the
    previous one. That is not paced input, so the clock must not drift towards it (the burst
    would then be released early)."""
    now = [100.0]
    pacer = PacketPacer(2.5, clock=lambda: now[0])
    pacer.put(packet(0))
    await asyncio.wait_for(pacer.get(), HANG_GUARD_S)  # starts the clock
    for segment in range(3):
        now[0] = 100.0 + 2.0 * segment
        for i in range(60 * segment + (segment == 0), 60 * (segment + 1)):
            pacer.put(packet(i))
    assert pacer.stats.clock_drift_s == 0
