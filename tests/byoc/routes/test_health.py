"""``/health`` counts live sessions from the session table and shows the registrations."""

from __future__ import annotations

import asyncio

from tests.byoc.harness import running, wait_until
from tests.byoc.job_workers import image_worker
from tests.byoc.routes.test_image_job import job_body, png_bytes
from tests.byoc.stream_helpers import start_via_orch, stop_via_orch


async def test_active_streams_follows_live_sessions_and_registrations_are_shown() -> None:
    async with running(workers={"infer": image_worker}) as env:
        await wait_until(lambda: env.runner.supervisor.is_ready("infer"), timeout=60)

        async def health() -> dict[str, object]:
            async with env.http.get(env.url + "/health") as r:
                assert r.status == 200
                return dict(await r.json())

        first = await health()
        assert first["active_streams"] == 0
        assert first["orchestrators"] == {
            env.orch_url: {"state": "registered", "registrations": 1, "last_error": None}
        }
        async with await start_via_orch(env, "h1") as r:
            assert r.status == 200
        job = asyncio.create_task(
            env.http.post(env.url + "/comfystream-image", json=job_body(png_bytes(4, 4), delay=1))
        )
        await wait_until(lambda: env.runner.runtime.job_slots.in_flight == 1)
        assert (await health())["active_streams"] == 2  # the stream and the running job
        async with await job as r:
            assert r.status == 200
        async with await stop_via_orch(env, "h1") as r:
            assert r.status == 200
        assert (await health())["active_streams"] == 0
