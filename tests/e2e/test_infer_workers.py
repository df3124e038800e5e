"""Two infer worker processes behind one runner (``--infer-workers 2``, the real ingest, infer and
egress workers, built-in engine): streams are spread over both, a SIGKILL of one restarts only it
and touches only its streams, an image job goes to the worker that is up, and ``/health`` and
``/metrics`` list both workers. Waits are hang guards only."""

from __future__ import annotations

import base64
import io
import json
import os
import signal

import numpy as np
from PIL import Image

from tests.byoc.harness import Env, wait_until
from tests.byoc.test_metrics import scrape, value
from tests.e2e.conftest import (
    INVERT,
    PASSTHROUGH,
    LiveSource,
    OutputReader,
    live_runner,
    start_stream,
)

INFER = ["infer-0", "infer-1"]


def processed_after(reader: OutputReader, index: int) -> int:
    """Inverted output frames of input frames sent after ``index``."""
    return sum(1 for f in reader.frames if f.inverted and (f.counter or -1) > index)


async def image_job(env: Env) -> tuple[int, dict[str, object]]:
    buffer = io.BytesIO()
    Image.fromarray(np.full((24, 40, 3), 90, np.uint8)).save(buffer, format="PNG")
    body = {"image": base64.b64encode(buffer.getvalue()).decode(), "workflow": PASSTHROUGH}
    async with env.http.post(
        f"{env.url}/process/request/comfystream-image", data=json.dumps(body)
    ) as response:
        return response.status, await response.json()


async def kill_and_wait_down(env: Env, worker: str) -> int:
    """SIGKILL ``worker``; return its old pid once the supervisor saw it go."""
    supervisor = env.runner.supervisor
    pid = supervisor.snapshot()[worker]["pid"]
    os.kill(pid, signal.SIGKILL)
    await wait_until(lambda: not supervisor.is_ready(worker), timeout=30, interval=0.005)
    return pid


async def test_streams_spread_over_two_infer_workers_and_one_restarts_alone() -> None:
    async with live_runner(infer_workers=2) as env:
        supervisor = env.runner.supervisor
        assert supervisor.names("infer") == INFER

        async with env.http.get(f"{env.url}/health") as response:
            health = await response.json()
        for index, name in enumerate(INFER):
            assert health["workers"][name]["state"] == "ready"
            assert (health["workers"][name]["role"], health["workers"][name]["index"]) == (
                "infer",
                index,
            )
        _, samples = await scrape(env.http, f"{env.url}/metrics")
        for index in ("0", "1"):
            assert value(samples, "byoc_worker_state", role="infer", index=index, state="ready")
        assert value(samples, "byoc_worker_state", role="ingest", index="0", state="ready")

        ids = [f"spread-{i}" for i in range(4)]
        urls = {}
        for stream_id in ids:
            started = await start_stream(env, stream_id, {"workflow": INVERT})
            assert started is not None
            urls[stream_id] = started
        placement = supervisor.placement
        assert placement.load() == {"infer-0": 2, "infer-1": 2}
        async with env.http.get(f"{env.url}/health") as response:
            workers = (await response.json())["workers"]
        assert [workers[name]["streams"] for name in INFER] == [2, 2]
        kept, hit = placement.streams_on("infer-0"), placement.streams_on("infer-1")
        assert sorted(kept + hit) == ids

        # One stream of each worker carries video (four would only load the machine).
        watched = {kept[0]: "infer-0", hit[0]: "infer-1"}
        sources = {s: LiveSource(urls[s].publish, audio=False) for s in watched}
        readers = {s: OutputReader(urls[s].subscribe).start() for s in watched}
        try:
            for source in sources.values():
                source.start()
            for reader in readers.values():
                await reader.wait_for(lambda r: processed_after(r, -1) >= 10, timeout=60)
            pid_kept = supervisor.snapshot()["infer-0"]["pid"]
            killed_index = {s: sources[s].next_index for s in watched}
            pid_hit = await kill_and_wait_down(env, "infer-1")

            def restarted() -> bool:
                info = supervisor.snapshot()["infer-1"]
                return info["pid"] not in (None, pid_hit) and supervisor.is_ready("infer-1")

            await wait_until(restarted, timeout=120, interval=0.02)
            for stream_id, reader in readers.items():
                after = killed_index[stream_id]
                await reader.wait_for(lambda r, a=after: processed_after(r, a) >= 10, 60)
        finally:
            for source in sources.values():
                await source.stop()
            for reader in readers.values():
                await reader.close()

        snapshot = supervisor.snapshot()
        assert snapshot["infer-0"]["pid"] == pid_kept and snapshot["infer-0"]["restarts"] == 0
        assert snapshot["infer-1"]["restarts"] == 1
        assert snapshot["ingest"]["restarts"] == 0 and snapshot["egress"]["restarts"] == 0
        for stream_id in ids:
            session = env.runner.runtime.sessions.get(stream_id)
            assert session is not None and session.state.live, stream_id
            assert session.restarts == (1 if stream_id in hit else 0), stream_id
        # The untouched worker's stream never passed a frame through unprocessed.
        untouched = readers[kept[0]].frames
        first = next(i for i, f in enumerate(untouched) if f.inverted)
        assert all(f.inverted is not False for f in untouched[first:])
        assert placement.load() == {"infer-0": 2, "infer-1": 2}  # streams kept their worker
        # Each stream's figures name its worker. They arrive once per report interval, and the
        # restarted worker's first report may still be on its way: poll, under a hang guard.
        for stream_id, worker in watched.items():
            labels = {"stream_id": stream_id, "worker": worker, "direction": "out"}

            async def reported(labels: dict[str, str] = labels) -> bool:
                _, samples = await scrape(env.http, f"{env.url}/metrics")
                return bool(value(samples, "byoc_stream_frames_total", **labels))

            await wait_until(reported, timeout=60, interval=0.2)

        # infer-0 down: the tie would go to it, so the job shows it goes to the live one.
        await kill_and_wait_down(env, "infer-0")
        assert placement.for_job() == "infer-1"
        status, answer = await image_job(env)
        assert status == 200, answer
        await wait_until(lambda: supervisor.is_ready("infer-0"), timeout=120)
