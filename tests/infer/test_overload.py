"""Past capacity, one infer worker degrades every stream evenly (``infer.scheduling``).

A real infer worker process runs four live streams whose workflow goes through ``TestGate``
(``tests/infer/gated_infer.py``): each engine call blocks until the test releases it, and while
it is blocked the test writes new frames into every stream's input ring. The worker is thus
overloaded by construction, not by a busy machine, and the test can say exactly which frame each
call should carry. Three streams share a workflow (one batched call); the fourth runs another
(its own call, after or before theirs). Asserted, with counts only: every call carries each
stream's newest frame (also the call that waited behind another group), every stream keeps
flowing with the same number of frames out, drop rates stay within 1.5x of each other, and every
frame written is either delivered or counted by reason."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
from collections.abc import AsyncIterator
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from byoc.supervisor import Supervisor
from ipc.messages import InferConfig, StreamReply, StreamStart, StreamStats, StreamStop
from ipc.ring import FrameRing, RingReader, RingSpec, RingWriter
from tests.infer.gated_infer import GATE_ENV, address
from tests.infer.gated_infer import main as gated_main
from tests.infer.test_worker import SETTINGS, Inbox

STREAMS = 4
MARKERS = [20 + 40 * i for i in range(STREAMS)]  # red value of stream i's frames
FRAMES_PER_CALL = 2  # written into every stream while each call is held
HELD_CALLS = 30  # calls during which frames are written
HANG_GUARD_S = 60.0


def gate_workflow(lane: int) -> str:
    return json.dumps(
        {
            "1": {"class_type": "LoadTensor", "inputs": {}},
            "2": {"class_type": "TestGate", "inputs": {"image": ["1", 0], "lane": lane}},
            "3": {"class_type": "SaveTensor", "inputs": {"images": ["2", 0]}},
        }
    )


class Gate:
    """The test's end of the gate: reports in, releases out."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
        self.sock.bind(address(key, "test"))

    async def next_report(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(self.sock, 65536), HANG_GUARD_S)
        return dict(json.loads(data))

    def release(self) -> None:
        self.sock.sendto(b"go", address(self.key, "node"))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
async def gated(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Supervisor, Inbox, Gate]]:
    key = f"gate-{os.getpid()}-{secrets.token_hex(4)}"
    monkeypatch.setenv(GATE_ENV, key)
    gate = Gate(key)
    supervisor = Supervisor(
        SETTINGS, workers={"infer": gated_main}, worker_options={"infer": {"engine": "builtin"}}
    )
    inbox = Inbox()
    supervisor.route(StreamStats, inbox)
    await supervisor.start()
    try:
        assert await supervisor.wait_ready(120), supervisor.snapshot()
        yield supervisor, inbox, gate
    finally:
        await supervisor.stop()
        gate.close()


@pytest.fixture
def rings() -> Any:
    token = secrets.token_hex(4)
    created = []
    for i in range(STREAMS):
        for direction in ("in", "out"):
            spec = RingSpec(
                name=f"cbyoc-ovl{token}{i}-{direction}",
                slots=4,
                max_width=32,
                max_height=32,
                pixel_format="rgb24",
            )
            created.append(FrameRing.create(spec))
    yield [(created[2 * i], created[2 * i + 1]) for i in range(STREAMS)]
    for ring in created:
        ring.close()
        ring.unlink()


class Feed:
    """Writes marked frames into the streams' input rings and counts what comes out."""

    def __init__(self, pairs: list[tuple[FrameRing, FrameRing]]) -> None:
        self.writers: list[RingWriter] = [i.writer() for i, _ in pairs]
        self.readers: list[RingReader] = [o.reader() for _, o in pairs]
        self.written = [0] * STREAMS
        self.delivered = [0] * STREAMS

    def write(self, stream: int) -> None:
        pixels = np.zeros((24, 32, 3), np.uint8)
        pixels[..., 0] = MARKERS[stream]
        pixels[..., 1] = self.written[stream] % 256
        self.writers[stream].write(
            pixels, pts=self.written[stream] * 3000, time_base=Fraction(1, 90000)
        )
        self.written[stream] += 1

    def newest(self, stream: int) -> int:
        return (self.written[stream] - 1) % 256

    def drain(self) -> None:
        for stream, reader in enumerate(self.readers):
            while (frame := reader.read(copy=True)) is not None:
                assert int(frame.data.reshape(-1)[0]) == MARKERS[stream]
                self.delivered[stream] += 1


async def test_four_streams_on_an_overloaded_worker_degrade_evenly(
    gated: tuple[Supervisor, Inbox, Gate], rings: list[tuple[FrameRing, FrameRing]]
) -> None:
    supervisor, inbox, gate = gated
    feed = Feed(rings)
    ids = [f"ovl{i}" for i in range(STREAMS)]

    async def start(i: int) -> None:
        config = InferConfig(
            in_ring=rings[i][0].spec,
            out_ring=rings[i][1].spec,
            workflow=gate_workflow(1 if i == STREAMS - 1 else 0),
            stats_interval_s=0.5,
        )
        message = StreamStart(stream_id=ids[i], config=config, request_id=f"start-{i}")
        reply = await supervisor.requests.ask("infer", message, f"start-{i}", HANG_GUARD_S)
        assert isinstance(reply, StreamReply) and reply.status == 200, reply

    starting = asyncio.ensure_future(asyncio.gather(*(start(i) for i in range(STREAMS))))
    calls: list[dict[str, Any]] = []
    held = 0
    seeded = False
    while True:
        if not seeded and starting.done():
            starting.result()
            for i in range(STREAMS):
                feed.write(i)
            seeded = True
        pending_report = asyncio.ensure_future(gate.next_report())
        if not seeded:
            await asyncio.wait([pending_report, starting], return_when=asyncio.FIRST_COMPLETED)
            if not pending_report.done():
                pending_report.cancel()
                continue
        report = await pending_report
        frames = [(MARKERS.index(r), g) for r, g in report["frames"] if r in MARKERS]
        if not frames:  # a warm-up (set-up or the first frame's size): not a stream's frame
            gate.release()
            continue
        # The frames of this call are the newest of their streams, even when the call waited
        # behind another group of the round.
        for stream, sequence in frames:
            assert sequence == feed.newest(stream), (report, feed.written)
        calls.append(report)
        feed.drain()
        if held < HELD_CALLS:
            held += 1
            for _ in range(FRAMES_PER_CALL):
                for i in range(STREAMS):
                    feed.write(i)
        gate.release()
        if held == HELD_CALLS and _all_newest_taken(calls, feed):
            break

    async def delivered_all() -> None:
        while sum(feed.delivered) < sum(len(c["frames"]) for c in calls):
            await asyncio.sleep(0.01)
            feed.drain()

    await asyncio.wait_for(delivered_all(), HANG_GUARD_S)
    for i in range(STREAMS):
        await supervisor.send("infer", StreamStop(stream_id=ids[i], reason="test over"))
    finals = {}
    for i in range(STREAMS):
        final = await inbox.wait_for(
            lambda m, s=ids[i], n=feed.delivered[i]: (
                isinstance(m, StreamStats) and m.stream_id == s and m.frames_out == n
            ),
            HANG_GUARD_S,
        )
        assert isinstance(final, StreamStats)
        finals[i] = final

    # Every stream kept flowing, with the same share of the worker.
    assert min(feed.delivered) >= HELD_CALLS // 2
    assert max(feed.delivered) - min(feed.delivered) <= 1, feed.delivered
    # Comparable drop rates, and every frame written is delivered or counted by reason.
    rates = []
    for i in range(STREAMS):
        dropped = finals[i].dropped
        lost = dropped.get("infer_behind", 0) + dropped.get("input_ring_overwrite", 0)
        assert feed.written[i] == feed.delivered[i] + lost, (i, feed.written[i], dict(dropped))
        rates.append(lost / feed.written[i])
    assert min(rates) > 0  # overloaded indeed
    assert max(rates) <= 1.5 * min(rates), rates
    # The separate workflow ran in calls of its own, the three others batched together.
    assert all({s for s, _ in _frames(c)} in ({0, 1, 2}, {3}) for c in calls[1:])


def _frames(call: dict[str, Any]) -> list[tuple[int, int]]:
    return [(MARKERS.index(r), g) for r, g in call["frames"] if r in MARKERS]


def _all_newest_taken(calls: list[dict[str, Any]], feed: Feed) -> bool:
    """Whether every stream's last written frame went into a call."""
    taken = {(s, g) for call in calls[-4:] for s, g in _frames(call)}
    return all((i, feed.newest(i)) in taken for i in range(STREAMS))
