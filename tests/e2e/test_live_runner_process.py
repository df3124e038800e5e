"""The runner as a real process, a Live Runner of the stand-in (in this process): when it is
frozen (SIGSTOP) past the stand-in's heartbeat TTL the stand-in expires it and ends its
sessions; thawed (SIGCONT), it finds out from its next heartbeat, registers again under the same
id, and drops the sessions the stand-in no longer lists."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from byoc.livepeer.standin.orchestrator import LocalOrchestrator
from tests.byoc.harness import wait_until
from tests.byoc.live_runner.helpers import reserve
from tests.e2e.test_restart_and_drain import FAST_ENV, SCRIPT, SECRET, free_port, stop_process

TTL_S = 1.5
START_HANG_GUARD_S = 120.0


@pytest.fixture
async def orch() -> AsyncIterator[LocalOrchestrator]:
    orch = LocalOrchestrator(
        secret=SECRET, heartbeat_interval_s=0.2, heartbeat_ttl_s=TTL_S, o2r_keepalive_interval_s=0.3
    )
    await orch.start()
    try:
        yield orch
    finally:
        await orch.close()


async def health(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    try:
        async with http.get(f"{url}/health", timeout=aiohttp.ClientTimeout(total=5)) as r:
            body = await r.json()
            return body if isinstance(body, dict) else {}
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return {}


def start_runner(
    port: int, orch_url: str, tmp_path: Path, log_path: Path
) -> subprocess.Popen[bytes]:
    """``comfystream-byoc serve`` as a Live Runner only (no BYOC registration)."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [
                str(SCRIPT),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workspace",
                str(tmp_path),
                "--state-dir",
                str(tmp_path / "state"),
                "--control-planes",
                "live-runner",
                "--live-runner-orch-url",
                orch_url,
                "--orch-secret",
                SECRET,
            ],
            env={**os.environ, **FAST_ENV},
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def test_frozen_runner_expires_then_registers_again(
    orch: LocalOrchestrator, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "runner.log"
    proc = start_runner(port, orch.url, tmp_path, log_path)
    http = aiohttp.ClientSession()
    try:
        registry = orch.live_runners
        await wait_until(lambda: registry.runners, timeout=START_HANG_GUARD_S)
        runner_id = next(iter(registry.runners))
        session = await reserve(http, orch.url, runner_id)

        async def holds(count: int) -> bool:
            body = await health(http, url)
            return body.get("live_runner", {}).get("sessions") == count

        await wait_until(lambda: holds(1), timeout=60)
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            # Past the TTL the sweep removes it, and its session with it.
            await wait_until(lambda: runner_id not in registry.runners, timeout=30)
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        await wait_until(lambda: runner_id in registry.runners, timeout=30)
        await wait_until(lambda: holds(0), timeout=30)
        body = await health(http, url)
        state = body["live_runner"]["orchestrators"][orch.url]
        assert state["state"] == "registered"
        assert state["registrations"] == 2
        assert session.session_id not in registry.runners[runner_id].session_ids()
    except BaseException:
        print(log_path.read_text(errors="replace")[-6000:])
        raise
    finally:
        await http.close()
        os.kill(proc.pid, signal.SIGCONT)
        stop_process(proc)
    assert proc.returncode == 0, log_path.read_text(errors="replace")[-4000:]
