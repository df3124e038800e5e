"""The supervisor with real spawned workers: readiness, import hygiene, restarts and stopping."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from byoc.settings import Settings
from byoc.supervisor import Supervisor, WorkerState
from ipc.messages import Message, Probe, ProbeResult, WorkerError
from tests.byoc import workers_for_tests

FAST = Settings(
    heartbeat_interval_s=0.2,
    heartbeat_timeout_s=1.5,
    restart_backoff_initial_s=0.1,
    restart_backoff_max_s=0.4,
    worker_start_timeout_s=60.0,
    shutdown_timeout_s=5.0,
)


async def eventually(check: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


@pytest.fixture
async def supervisor() -> AsyncIterator[Supervisor]:
    sup = Supervisor(FAST)
    await sup.start()
    assert await sup.wait_ready(60), sup.snapshot()
    yield sup
    await sup.stop()


async def test_three_named_workers_become_ready(supervisor: Supervisor) -> None:
    snapshot = supervisor.snapshot()
    assert set(snapshot) == {"ingest", "infer", "egress"}
    assert supervisor.status() == "healthy"
    for name, info in snapshot.items():
        assert info["state"] == "ready"
        cmdline = Path(f"/proc/{info['pid']}/cmdline").read_bytes()
        assert cmdline.startswith(f"comfystream-byoc: {name}".encode()), cmdline


async def test_workers_do_not_import_what_they_must_not(supervisor: Supervisor) -> None:
    results: dict[str, list[str]] = {}

    def collect(worker: str, message: Message) -> None:
        if isinstance(message, ProbeResult):
            results[worker] = message.data

    supervisor.route(ProbeResult, collect)
    for name in supervisor.workers:
        await supervisor.send(name, Probe(what="modules"))
    await eventually(lambda: len(results) == 3, what="probe results")
    parent_app = ("byoc.app", "byoc.serve", "byoc.supervisor", "byoc.routes", "byoc.sessions")
    for name, modules in results.items():
        leaked = [m for m in modules if m.startswith(parent_app)]
        assert not leaked, f"{name} imported parent modules {leaked}"
        # The trickle client stands on its own: no HTTP server, no local stand-in in a worker.
        servers = [m for m in modules if m.startswith(("aiohttp.web", "byoc.livepeer.standin"))]
        assert not servers, f"{name} imported server-side modules {servers}"
    infer = set(results["infer"])
    assert not {"aiohttp", "aiortc"} & infer, "infer must not import aiohttp or aiortc"


async def test_killed_worker_is_restarted(supervisor: Supervisor) -> None:
    restarted: list[tuple[str, int]] = []
    supervisor.on_restart(lambda name, n: restarted.append((name, n)))
    old_pid = supervisor.snapshot()["ingest"]["pid"]
    os.kill(old_pid, signal.SIGKILL)
    await eventually(lambda: supervisor.snapshot()["ingest"]["restarts"] == 1, what="restart")
    await eventually(lambda: supervisor.is_ready("ingest"), what="ready again")
    info = supervisor.snapshot()["ingest"]
    assert info["pid"] != old_pid
    assert "SIGKILL" in info["last_exit"]
    assert restarted == [("ingest", 1)]
    assert not alive(old_pid)
    assert supervisor.status() == "healthy"


async def test_hung_worker_is_detected_and_replaced(supervisor: Supervisor) -> None:
    old_pid = supervisor.snapshot()["egress"]["pid"]
    os.kill(old_pid, signal.SIGSTOP)  # alive but silent: only heartbeats can tell
    await eventually(lambda: supervisor.snapshot()["egress"]["restarts"] == 1, what="restart")
    await eventually(lambda: supervisor.is_ready("egress"), what="ready again")
    assert "hung" in supervisor.snapshot()["egress"]["last_exit"]
    await eventually(lambda: not alive(old_pid), what="old process reaped")


async def test_crash_loop_is_visible_and_the_rest_keep_running() -> None:
    sup = Supervisor(FAST, workers={"ingest": workers_for_tests.exits_at_once})
    await sup.start()
    try:
        await eventually(lambda: sup.snapshot()["ingest"]["crash_loop"], what="crash loop")
        assert sup.status() == "degraded"
        assert sup.snapshot()["ingest"]["restarts"] >= 3
        assert "exited with code 3" in sup.snapshot()["ingest"]["last_exit"]
    finally:
        await sup.stop()
    assert sup.snapshot()["ingest"]["state"] == WorkerState.STOPPED.value


async def test_start_failure_is_reported_and_retried() -> None:
    errors: list[WorkerError] = []
    sup = Supervisor(FAST, workers={"infer": workers_for_tests.fails_to_start})
    sup.route(WorkerError, lambda w, m: errors.append(m))
    await sup.start()
    try:
        await eventually(lambda: sup.snapshot()["infer"]["restarts"] >= 1, what="restart")
        assert any(e.fatal and "model file missing" in e.message for e in errors)
        assert sup.status() in ("starting", "degraded")
    finally:
        await sup.stop()


async def test_stop_leaves_no_process() -> None:
    sup = Supervisor(FAST)
    await sup.start()
    assert await sup.wait_ready(60)
    pids = [info["pid"] for info in sup.snapshot().values()]
    await sup.stop()
    for pid in pids:
        assert not alive(pid), pid
    assert all(info["state"] == "stopped" for info in sup.snapshot().values())


def test_several_workers_of_a_role_get_names_indices_and_their_own_options() -> None:
    sup = Supervisor(
        FAST,
        workers={
            "ingest": workers_for_tests.exits_at_once,
            "infer": workers_for_tests.exits_at_once,
        },
        worker_options={"infer": {"engine": "builtin"}, "infer-1": {"gpu": "1"}},
        worker_counts={"infer": 2},
    )
    assert list(sup.workers) == ["ingest", "infer-0", "infer-1"]
    assert sup.names("infer") == ["infer-0", "infer-1"]
    assert [(h.role, h.index) for h in sup.workers.values()] == [
        ("ingest", 0),
        ("infer", 0),
        ("infer", 1),
    ]
    assert sup.workers["infer-0"].options == {"engine": "builtin"}
    assert sup.workers["infer-1"].options == {"engine": "builtin", "gpu": "1"}
    snapshot = sup.snapshot()
    assert (snapshot["infer-1"]["role"], snapshot["infer-1"]["index"]) == ("infer", 1)
    assert snapshot["infer-0"]["streams"] == 0
