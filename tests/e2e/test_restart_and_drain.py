"""The runner as a real process next to the stand-in orchestrator in its own process (so the
trickle channels outlive the runner): a ``kill -9`` mid-stream and a new ``serve`` on the same
state directory resume the stream; SIGTERM drains (new starts refused, the live stream keeps
flowing until its input ends, exit 0); a second signal stops at once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.byoc.stream_helpers import ALL_CHANNELS, stream_header
from tests.e2e.conftest import INVERT, EventLog, LiveSource, OutputReader

SCRIPT = Path(sys.executable).parent / "comfystream-byoc"
SECRET = "orch-secret"
FAST_ENV = {
    "HEARTBEAT_INTERVAL": "0.2",
    "HEARTBEAT_TIMEOUT": "3",
    "RESTART_BACKOFF": "0.1",
    "RESTART_BACKOFF_MAX": "0.5",
    "REGISTER_RETRY_MAX": "0.5",
    "EVENTS_INTERVAL": "0.5",
    "COMFY_ENGINE": "builtin",
    "LOG_LEVEL": "INFO",
}
RESUME_HANG_GUARD_S = 30.0
WORKER_START_HANG_GUARD_S = 60.0
"""Starting the three workers (torch in infer) has taken ~25 s on a shared, overloaded CPU host
(load 20 on 2 cores); on an idle one the whole resume takes a few seconds."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGINT) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def children_of(pid: int) -> list[int]:
    found = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


def process_gone(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


async def poll(check: Any, timeout: float, interval: float = 0.05) -> Any:
    """Poll ``check`` (sync or async) until truthy; a hang guard, not a figure."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return result
        except (OSError, aiohttp.ClientError, AssertionError, ValueError) as exc:
            last = exc
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last error: {last})")


@dataclass
class Stack:
    """The stand-in and the runner, as processes, and what it takes to restart the runner."""

    http: aiohttp.ClientSession
    orch_url: str
    port: int
    state_dir: Path
    workspace: Path
    log_dir: Path
    runner: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_runner(self, *extra: str) -> subprocess.Popen[bytes]:
        self.starts += 1
        with open(self.log_dir / f"runner-{self.starts}.log", "wb") as log:
            self.runner = subprocess.Popen(
                [
                    str(SCRIPT),
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--workspace",
                    str(self.workspace),
                    "--state-dir",
                    str(self.state_dir),
                    "--orch-url",
                    self.orch_url,
                    "--orch-secret",
                    SECRET,
                    "--capability-names",
                    "comfystream-video",
                    *extra,
                ],
                env={**os.environ, **FAST_ENV},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self.runner

    async def health(self) -> dict[str, Any]:
        async with self.http.get(f"{self.url}/health") as r:
            body = await r.json()
            assert isinstance(body, dict)
            return body

    async def wait_registered(self, timeout: float = 120.0) -> None:
        async def ready() -> bool:
            health = await self.health()
            orchestrators = health.get("orchestrators", {})
            return health["status"] == "healthy" and all(
                o["state"] == "registered" for o in orchestrators.values()
            )

        await poll(ready, timeout, interval=0.2)

    async def status(self, session_id: str) -> dict[str, Any]:
        async with self.http.get(f"{self.url}/byoc/session/{session_id}/status") as r:
            body = await r.json()
            assert r.status == 200, body
            assert isinstance(body, dict)
            return body

    async def start_stream(self, stream_id: str) -> aiohttp.ClientResponse:
        return await self.http.post(
            f"{self.orch_url}/ai/stream/start",
            json={"params": {"workflow": INVERT}},
            headers={"Livepeer": stream_header(stream_id, parameters=ALL_CHANNELS)},
        )

    def runner_log(self) -> str:
        return "\n".join(
            path.read_text(errors="replace")[-4000:]
            for path in sorted(self.log_dir.glob("runner-*.log"))
        )


def start_orchestrator(port: int, log_path: Path) -> subprocess.Popen[bytes]:
    """The stand-in in its own process: its trickle channels outlive the runner."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [
                str(SCRIPT),
                "orchestrator",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--secret",
                SECRET,
                "--keepalive-interval",
                "1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@contextlib.asynccontextmanager
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    orch_port = free_port()
    orchestrator = start_orchestrator(orch_port, tmp_path / "orchestrator.log")
    http = aiohttp.ClientSession()
    s = Stack(
        http,
        f"http://127.0.0.1:{orch_port}",
        free_port(),
        tmp_path / "state",
        tmp_path,
        tmp_path,
    )
    try:

        async def orchestrator_up() -> bool:
            async with http.get(f"{s.orch_url}/ai/trickle/probe") as r:
                return r.status < 500

        await poll(orchestrator_up, 60, interval=0.1)
        yield s
    finally:
        if s.runner is not None:
            stop_process(s.runner)
        stop_process(orchestrator)
        await http.close()


async def test_kill_9_mid_stream_then_serve_again_resumes_the_stream(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        first = s.start_runner()
        await s.wait_registered()
        async with await s.start_stream("resume-1") as r:
            assert r.status == 200, await r.text()
            publish, output = r.headers["X-Publish-Url"], r.headers["X-Subscribe-Url"]
            events_url = r.headers["X-Events-Url"]
        reader = OutputReader(output).start()
        events = EventLog(events_url)
        source = LiveSource(publish, audio=False)
        source.start()
        try:
            await reader.wait_for(lambda rd: len(rd.frames) >= 15, timeout=60)
            before = await s.status("resume-1")
            assert before["status"] == "processing"
            workers = children_of(first.pid)
            assert len(workers) >= 3

            loop = asyncio.get_running_loop()
            killed_at = loop.time()
            first.send_signal(signal.SIGKILL)
            first.wait(30)
            await poll(lambda: all(process_gone(pid) for pid in workers), 30)  # PDEATHSIG

            # Frames arriving after the new start come from the new runner (what the old one
            # had in flight was flushed to the reader when its connection broke).
            restarted_at = loop.time()
            s.start_runner()
            await poll(s.health, RESUME_HANG_GUARD_S, interval=0.05)
            listening_at = loop.time()
            after = await poll(
                lambda: _processing(s, "resume-1"), WORKER_START_HANG_GUARD_S, interval=0.05
            )
            processing_at = loop.time()
            await reader.wait_for(
                lambda rd: any(f.arrived > restarted_at for f in rd.frames),
                timeout=RESUME_HANG_GUARD_S,
            )
            first_new = next(f for f in reader.frames if f.arrived > restarted_at)
            print(
                f"resume: kill -9 -> first output frame {first_new.arrived - killed_at:.2f}s "
                f"(new runner started {restarted_at - killed_at:.2f}s, listening "
                f"{listening_at - killed_at:.2f}s, processing {processing_at - killed_at:.2f}s)"
            )
            # Output keeps flowing after the resume, and it is the processed (inverted) input.
            count = len(reader.frames)
            await reader.wait_for(lambda rd: len(rd.frames) >= count + 15, timeout=30)
            resumed_frames = [f for f in reader.frames if f.arrived > restarted_at]
            assert all(f.inverted for f in resumed_frames if f.counter is not None)
            event = await events.until(lambda e: e.get("resumed") == 1, timeout=30)
            assert event["stream_id"] == "resume-1"
        finally:
            await source.stop()
            await reader.close()
            await events.close()

        # The status history is intact: the first run's states, then the resumed run's.
        history = [h["status"] for h in after["history"]]
        assert history[: len(before["history"])] == [h["status"] for h in before["history"]]
        assert history[len(before["history"]) :][:1] == ["starting"]
        assert history[-1] == "processing" and after["resumed"] == 1
        assert after["created_at"] == before["created_at"]
        assert s.runner is not None
        stop_process(s.runner)
        assert s.runner.returncode == 0, s.runner_log()


async def _processing(s: Stack, session_id: str) -> dict[str, Any] | None:
    status = await s.status(session_id)
    if status["status"] == "processing" and status["resumed"] >= 1:
        return status
    return None


async def test_sigterm_drains_a_live_stream_until_its_input_ends_then_exits_0(
    tmp_path: Path,
) -> None:
    async with stack(tmp_path) as s:
        proc = s.start_runner("--drain-timeout", "120")
        await s.wait_registered()
        async with await s.start_stream("drain-1") as r:
            assert r.status == 200, await r.text()
            publish, output = r.headers["X-Publish-Url"], r.headers["X-Subscribe-Url"]
        reader = OutputReader(output).start()
        source = LiveSource(publish, audio=False)
        source.start()
        try:
            await reader.wait_for(lambda rd: len(rd.frames) >= 10, timeout=60)
            proc.send_signal(signal.SIGTERM)
            await poll(lambda: _draining(s), 30)
            signalled_at = asyncio.get_running_loop().time()

            # New starts are refused, straight and through the orchestrator.
            async with s.http.post(f"{s.url}/stream/start", data=b"{}") as refused:
                assert refused.status == 503
                assert int(refused.headers["Retry-After"]) >= 1
            async with await s.start_stream("drain-2") as refused:
                assert refused.status >= 400
            # The live stream keeps flowing.
            await reader.wait_for(
                lambda rd: sum(f.arrived > signalled_at for f in rd.frames) >= 15, timeout=30
            )
            assert proc.poll() is None
            assert (await s.status("drain-1"))["status"] == "processing"
            # Its input ends: the session ends and the runner exits 0.
            await source.stop()
            async with s.http.delete(publish) as deleted:
                assert deleted.status < 400
            code = await asyncio.to_thread(proc.wait, 60)
            assert code == 0, s.runner_log()
        finally:
            await source.stop()
            await reader.close()
        log = s.runner_log()
        assert "unregistered comfystream-video" in log
        assert "drained: no live session left" in log


async def _draining(s: Stack) -> bool:
    return (await s.health())["status"] == "draining"


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_second_signal_stops_a_drain_at_once(tmp_path: Path, second: int) -> None:
    async with stack(tmp_path) as s:
        proc = s.start_runner("--drain-timeout", "300")
        await s.wait_registered()
        async with await s.start_stream("cut-1") as r:
            assert r.status == 200, await r.text()
            events = EventLog(r.headers["X-Events-Url"])
        try:
            await poll(lambda: _state_is(s, "cut-1", "ready"), 60)
            proc.send_signal(signal.SIGTERM)
            await poll(lambda: _draining(s), 30)
            assert proc.poll() is None  # still draining: the stream holds it
            proc.send_signal(second)
            code = await asyncio.to_thread(proc.wait, 60)  # hang guard; the drain had 300 s
            assert code == 0, s.runner_log()
            await events.until(lambda e: e["state"] == "stopped", timeout=30)
        finally:
            await events.close()
        assert "second stop signal: stopping now" in s.runner_log()


async def _state_is(s: Stack, session_id: str, state: str) -> bool:
    return bool((await s.status(session_id))["status"] == state)
