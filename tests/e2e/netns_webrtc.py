"""Run inside a loopback-only network namespace (``unshare -n``): the runner, with its default
WebRTC settings, serves an aiortc publisher and viewer started in the same namespace.

Only the test's own peers are told to offer 127.0.0.1; the runner finds it by itself. Exits 0
when processed frames came back over WHEP, non-zero otherwise (the test runs it as a script).
"""

from __future__ import annotations

import asyncio
import sys

from byoc.sessions import SessionState
from tests.byoc.harness import wait_until
from tests.byoc.webrtc_clients import Viewer, loopback_candidates, whep_view, whip_publish
from tests.e2e.conftest import live_runner


async def main() -> int:
    async with live_runner(webrtc_idle_timeout_s=5.0) as env:
        with loopback_candidates():
            publisher = await whip_publish(env.http, f"{env.url}/whip")
            session_id = publisher.location.rsplit("/", 1)[1]
            candidates = [
                line for line in publisher.answer.splitlines() if line.startswith("a=candidate:")
            ]
            assert candidates and all(" 127.0.0.1 " in c for c in candidates), candidates
            session = env.runner.runtime.sessions.get(session_id)
            assert session is not None
            await wait_until(lambda: session.state is SessionState.PROCESSING, 60)
            viewer: Viewer | None = None

            async def attempt() -> bool:
                nonlocal viewer
                result = await whep_view(env.http, f"{env.url}/byoc/whep/{session_id}", expect=409)
                viewer = result if isinstance(result, Viewer) else None
                return viewer is not None

            await wait_until(attempt, 60, 0.2)
            assert viewer is not None
            received = viewer.received
            await wait_until(lambda: sum(c is not None for c in received.counters) >= 10, 60)
            await viewer.close()
            async with env.http.delete(f"{env.url}{publisher.location}") as response:
                assert response.status == 200
            await publisher.pc.close()
    print("frames received over WHEP in a loopback-only namespace")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
