"""The egress worker as the parent runs it: a spawned process with the real worker runtime
(``ipc.child.run_worker``) over a socketpair control channel; the test plays the parent (it
creates the ring, sends StreamStart/StreamAudio/StreamStop) and infer (it writes the ring), and
a trickle subscriber reads the published channel back."""

from __future__ import annotations

import asyncio
import contextlib

from benchmarks.media.clip import ClipSpec, read_counter
from egress.worker import main as egress_main
from ipc.messages import (
    EgressConfig,
    Heartbeat,
    StreamStart,
    StreamState,
    StreamStats,
    StreamStop,
    WorkerError,
)
from ipc.ring import RingWriter
from tests.egress.stream_helpers import read_output, source_audio, wait_until, write_frame
from tests.ingest.stream_helpers import owned_ring, ring_spec, spawned_worker, trickle_channel

SPEC = ClipSpec(width=256, height=192, audio_channels=1)


async def write_live(writer: RingWriter, frames: range, interval: float = 1 / 30) -> None:
    for index in frames:
        write_frame(writer, SPEC, index)
        await asyncio.sleep(interval)


async def test_worker_publishes_frames_and_relayed_audio_until_stopped() -> None:
    spec = ring_spec("out")
    frames = 30
    audio = source_audio(SPEC, frames, "opus")
    async with (
        owned_ring(spec) as ring,
        trickle_channel("out") as (server, name, url),
        spawned_worker(egress_main, "egress") as worker,
    ):
        reader = asyncio.create_task(read_output(url))
        config = EgressConfig(ring=spec, publish_url=url, segment_seconds=0.5, stats_interval_s=0.2)
        await worker.send(StreamStart(stream_id="e-1", config=config))
        for message in audio:  # the parent relays ingest's audio, ahead of the video
            message.stream_id = "e-1"
            await worker.send(message)
        with ring.writer() as writer:
            await write_live(writer, range(frames), interval=1 / 60)
        got = worker.received
        await got.wait_for(StreamStats, lambda m: m.frames_out == frames)
        busy = await got.wait_for(Heartbeat, lambda m: m.active_streams == 1)
        await worker.send(StreamStop(stream_id="e-1", reason="test"))
        output = await asyncio.wait_for(reader, 60)  # the stop ends the channel
        assert server.channel(name) is None
        await got.wait_for(Heartbeat, lambda m: m.seq > busy.seq and m.active_streams == 0)
        ring.reader().close()  # the worker gave the reader role up

    assert [read_counter(f.array, "yuv420p") for f in output.video] == list(range(frames))  # type: ignore[arg-type]
    assert sum(a.samples for a in output.audio) / 48_000 >= 0.9 * frames / SPEC.fps
    assert [m.state for m in got.of(StreamState)] == ["processing"]
    assert got.of(WorkerError) == []


async def test_worker_restart_resumes_publishing_to_the_same_channel() -> None:
    spec = ring_spec("out")
    total = 120
    async with owned_ring(spec) as ring, trickle_channel("out") as (_server, _name, url):
        reader = asyncio.create_task(read_output(url))
        config = EgressConfig(ring=spec, publish_url=url, segment_seconds=0.5, audio=False)
        start = StreamStart(stream_id="e-2", config=config)
        async with spawned_worker(egress_main, "egress") as worker:
            with ring.writer() as writer:
                live = asyncio.create_task(write_live(writer, range(total)))
                try:
                    await worker.send(start)
                    await worker.received.wait_for(StreamStats, lambda m: m.frames_out >= 20)
                    await worker.kill()  # kill -9 mid-stream
                    await worker.start()  # the supervisor's restart
                    await worker.send(start)  # the parent resumes the stream
                    await asyncio.wait_for(live, 60)
                finally:
                    live.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await live
            report = await worker.received.wait_for(
                StreamStats, lambda m: m.frames_in + m.dropped["ring_overwrite"] > 30
            )
            # Everything written was taken from the ring, and a later report shows every frame
            # taken also published: only then is the stop sure to find nothing in flight.
            await wait_until(lambda: ring.stats().unread == 0)
            earlier = {id(m) for m in worker.received.of(StreamStats)}
            await worker.received.wait_for(
                StreamStats, lambda m: id(m) not in earlier and m.frames_out == m.frames_in
            )
            await worker.send(StreamStop(stream_id="e-2"))
            output = await asyncio.wait_for(reader, 60)

    counters = [read_counter(f.array, "yuv420p") for f in output.video]  # type: ignore[arg-type]
    assert None not in counters
    assert counters == sorted(counters) and counters[-1] == total - 1  # type: ignore[type-var]
    assert counters[0] == 0
    # Every segment, the restarted worker's first one included, opens with a keyframe.
    firsts = [
        f for i, f in enumerate(output.video) if not i or f.segment != output.video[i - 1].segment
    ]
    assert len(firsts) >= 3 and all(f.keyframe for f in firsts)
    assert report.worker == "egress"
