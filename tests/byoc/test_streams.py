"""The seam between the stream control plane and a media pipeline (``byoc.media_path``), with a
pipeline that talks to a real spawned worker over the real supervisor: worker reports drive the
session and the status events; slow, failing and vanished media paths are handled."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pytest

from byoc.media_path import ParamsRejected, StreamSpec
from byoc.sessions import SessionState
from byoc.supervisor import Supervisor
from ipc.messages import IngestConfig, StreamStart, StreamStop, StreamUpdate
from ipc.ring import RingSpec
from tests.byoc.harness import Env, running, wait_until
from tests.byoc.stream_helpers import EventReader, start_via_orch, update_via_orch
from tests.byoc.stream_workers import fake_ingest


class FakeWorkerMediaPath:
    """A media pipeline that hands streams to the ingest worker (as the streaming work will)."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.supervisor: Supervisor | None = None
        self.config = config or {}
        self.calls: list[tuple[str, str]] = []
        self.dead: set[str] = set()

    async def start(self, spec: StreamSpec) -> None:
        assert self.supervisor is not None
        self.calls.append(("start", spec.stream_id))
        ring = RingSpec(
            name=f"cbyoc-seam-{spec.stream_id}",
            slots=2,
            max_width=32,
            max_height=32,
            pixel_format="rgb24",
        )
        config = IngestConfig(ring=ring, subscribe_url=spec.subscribe_url or "")
        await self.supervisor.send("ingest", StreamStart(spec.stream_id, config))
        if self.config:
            await self.supervisor.send(
                "ingest", StreamUpdate(spec.stream_id, {"_test": self.config})
            )

    async def update(self, stream_id: str, params: dict[str, Any]) -> None:
        assert self.supervisor is not None
        if params.get("prompts") == "invalid":
            raise ParamsRejected("workflow: unknown node type Nope")
        self.calls.append(("update", stream_id))
        await self.supervisor.send("ingest", StreamUpdate(stream_id, params))

    async def stop(self, stream_id: str, reason: str) -> None:
        assert self.supervisor is not None
        self.calls.append(("stop", stream_id))
        if self.supervisor.is_ready("ingest"):
            await self.supervisor.send("ingest", StreamStop(stream_id, reason))

    def alive(self, stream_id: str) -> bool:
        return stream_id not in self.dead

    def uses_worker(self, stream_id: str, worker: str) -> bool:
        return True

    async def close(self) -> None:
        self.calls.append(("close", ""))


class ScriptedMediaPath:
    """A media path whose start waits until the test releases it, then does what the test asks."""

    def __init__(self, *, slow: bool, error: Exception | None = None) -> None:
        self.release = asyncio.Event()
        if not slow:
            self.release.set()
        self.error = error
        self.stopped: list[str] = []

    async def start(self, spec: StreamSpec) -> None:
        await self.release.wait()
        if self.error is not None:
            raise self.error

    async def update(self, stream_id: str, params: dict[str, Any]) -> None:
        return None

    async def stop(self, stream_id: str, reason: str) -> None:
        self.stopped.append(stream_id)

    def alive(self, stream_id: str) -> bool:
        return True

    def uses_worker(self, stream_id: str, worker: str) -> bool:
        return True

    async def close(self) -> None:
        return None


def state_of(env: Env, stream_id: str) -> SessionState | None:
    session = env.runner.runtime.sessions.get(stream_id)
    return session.state if session is not None else None


async def started_env(pipeline: FakeWorkerMediaPath, **changes: Any) -> Any:
    def factory(supervisor: Supervisor, settings: Any) -> FakeWorkerMediaPath:
        pipeline.supervisor = supervisor
        return pipeline

    manager = running(workers={"ingest": fake_ingest}, media_factory=factory, **changes)
    env = await manager.__aenter__()
    await wait_until(lambda: env.runner.supervisor.is_ready("ingest"), timeout=60)
    return manager, env


async def test_worker_reports_drive_state_and_figures_and_the_end() -> None:
    pipeline = FakeWorkerMediaPath({"end_with": "ended", "after": 1.0})
    manager, env = await started_env(pipeline)
    try:
        async with await start_via_orch(env, "m1", {"params": {"width": 32, "height": 32}}) as r:
            assert r.status == 200
            events_url = r.headers["X-Events-Url"]
        reader = EventReader(events_url)
        try:
            processing = await reader.until(lambda e: e["state"] == "processing")
            figures = await reader.until(lambda e: e["fps_in"] > 0)
            stopped = await reader.until(lambda e: e["state"] == "stopped")
        finally:
            await reader.close()
        assert processing["event"]["params"] == {"width": 32, "height": 32}
        event = figures["event"]
        assert (event["fps_in"], event["fps_out"], event["frames_dropped"]) == (29.5, 29.0, 3)
        assert event["latency_ms"] == 3.75  # no end_to_end stage: the stages' p50s add up
        assert event["dropped"] == {"ingest.damaged_input": 2, "ingest.decode_error": 1}
        assert set(event["stages"]) == {"decode", "encode"}
        assert stopped["event"]["state"] == "stopped"
        session = env.runner.runtime.sessions.get("m1")
        assert session is not None
        assert [s for s, _ in session.transitions] == ["starting", "ready", "processing", "stopped"]
        assert ("stop", "m1") in pipeline.calls
        assert env.runner.runtime.sessions.live_streams() == 0
    finally:
        await manager.__aexit__(None, None, None)


@pytest.mark.parametrize(
    ("end_with", "final"), [("completed", SessionState.COMPLETED), ("failed", SessionState.FAILED)]
)
async def test_completed_and_failed_reports(end_with: str, final: SessionState) -> None:
    pipeline = FakeWorkerMediaPath({"end_with": end_with, "after": 0.2, "error": "decoder crashed"})
    manager, env = await started_env(pipeline)
    try:
        async with await start_via_orch(env, "m2") as r:
            assert r.status == 200
        await wait_until(lambda: state_of(env, "m2") is final, timeout=60)
        session = env.runner.runtime.sessions.get("m2")
        assert session is not None
        if final is SessionState.FAILED:
            assert session.error == "decoder crashed"
    finally:
        await manager.__aexit__(None, None, None)


async def test_params_reach_the_pipeline_and_a_refusal_is_400() -> None:
    pipeline = FakeWorkerMediaPath()
    manager, env = await started_env(pipeline)
    try:
        async with await start_via_orch(env, "m3") as r:
            events_url = r.headers["X-Events-Url"]
        async with await update_via_orch(env, "m3", b'{"prompts": "fine"}') as r:
            assert r.status == 200
        assert ("update", "m3") in pipeline.calls
        async with await update_via_orch(env, "m3", b'{"prompts": "invalid"}') as r:
            assert r.status == 400
            assert "unknown node type" in await r.text()
        session = env.runner.runtime.sessions.get("m3")
        assert session is not None and session.params == {"prompts": "fine"}
        # The worker's error report (it echoes the params it saw) becomes the stream's last_error.
        reader = EventReader(events_url)
        try:
            await reader.until(lambda e: e["last_error"] == "ingest: saw params ['prompts']")
        finally:
            await reader.close()
    finally:
        await manager.__aexit__(None, None, None)


async def test_a_worker_restart_is_counted_in_the_events() -> None:
    pipeline = FakeWorkerMediaPath()
    manager, env = await started_env(pipeline)
    try:
        async with await start_via_orch(env, "m4") as r:
            events_url = r.headers["X-Events-Url"]
        await wait_until(lambda: state_of(env, "m4") is SessionState.PROCESSING)
        pid = env.runner.supervisor.workers["ingest"].pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        reader = EventReader(events_url)
        try:
            event = await reader.until(lambda e: e["restarts"] == 1, timeout=30)
        finally:
            await reader.close()
        assert event["event"]["state"] == "processing"  # the session survives the restart
    finally:
        await manager.__aexit__(None, None, None)


async def test_the_sweep_ends_streams_whose_media_path_is_gone() -> None:
    pipeline = FakeWorkerMediaPath()
    manager, env = await started_env(pipeline, session_sweep_interval_s=0.2)
    try:
        async with await start_via_orch(env, "m5") as r:
            assert r.status == 200
        await wait_until(lambda: state_of(env, "m5") is SessionState.PROCESSING)
        pipeline.dead.add("m5")
        await wait_until(lambda: state_of(env, "m5") is SessionState.FAILED, timeout=60)
    finally:
        await manager.__aexit__(None, None, None)


async def test_slow_set_up_answers_in_time_and_continues_in_the_background() -> None:
    pipeline = ScriptedMediaPath(slow=True)
    async with running(media=pipeline, stream_start_timeout_s=0.2) as env:
        async with await start_via_orch(env, "slow") as r:
            assert r.status == 200
        assert state_of(env, "slow") is SessionState.STARTING
        pipeline.release.set()  # the set-up finishes after the answer
        await wait_until(lambda: state_of(env, "slow") is SessionState.READY, timeout=60)


@pytest.mark.parametrize(
    ("error", "status"),
    [(ParamsRejected("width too large for the model"), 400), (RuntimeError("no GPU"), 500)],
)
async def test_a_set_up_failing_before_the_answer(error: Exception, status: int) -> None:
    pipeline = ScriptedMediaPath(slow=False, error=error)
    async with running(media=pipeline) as env:
        async with await start_via_orch(env, "bad") as r:
            assert r.status == status
        session = env.runner.runtime.sessions.get("bad")
        assert session is not None and session.state is SessionState.FAILED
        assert session.error == str(error)
        assert pipeline.stopped == ["bad"]
        assert env.runner.runtime.sessions.live_streams() == 0


async def test_a_set_up_failing_after_the_answer_fails_the_session() -> None:
    pipeline = ScriptedMediaPath(slow=True, error=RuntimeError("model download failed"))
    async with running(media=pipeline, stream_start_timeout_s=0.1) as env:
        async with await start_via_orch(env, "late") as r:
            assert r.status == 200
        pipeline.release.set()  # and fails after the answer
        await wait_until(lambda: state_of(env, "late") is SessionState.FAILED, timeout=60)
        session = env.runner.runtime.sessions.get("late")
        assert session is not None and session.error == "model download failed"
