"""The runner with a state directory, in-process: ended sessions are readable after a restart,
a corrupt state file is moved aside without stopping the start, and one directory takes one
runner. (The kill -9 resume runs against the real process in ``tests/e2e``.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from byoc.sessions import SessionState
from byoc.state_store import DB_FILE, StateDirBusy
from tests.byoc.harness import Env, running, wait_until
from tests.byoc.stream_helpers import start_via_orch, stop_via_orch


def state_of(env: Env, stream_id: str) -> SessionState | None:
    session = env.runner.runtime.sessions.get(stream_id)
    return session.state if session is not None else None


async def status(env: Env, session_id: str) -> tuple[int, dict[str, object]]:
    async with env.http.get(f"{env.url}/byoc/session/{session_id}/status") as r:
        return r.status, await r.json()


async def test_an_ended_session_is_readable_after_a_restart(tmp_path: Path) -> None:
    async with running(state_dir=tmp_path) as env:
        async with await start_via_orch(env, "old", parameters={}) as r:
            assert r.status == 200
        await wait_until(lambda: state_of(env, "old") is SessionState.READY)
        async with await stop_via_orch(env, "old") as r:
            assert r.status < 400
        await wait_until(lambda: state_of(env, "old") is SessionState.STOPPED)
        code, before = await status(env, "old")
        assert code == 200

    async with running(state_dir=tmp_path) as env:
        code, after = await status(env, "old")
        assert code == 200
        assert after == before
        assert [h["status"] for h in after["history"]] == ["starting", "ready", "stopped"]  # type: ignore[attr-defined]


async def test_a_corrupt_state_file_is_moved_aside_and_the_runner_starts(tmp_path: Path) -> None:
    (tmp_path / DB_FILE).write_bytes(b"\x00garbage, not SQLite\x00" * 64)
    async with running(state_dir=tmp_path) as env:
        async with env.http.get(f"{env.url}/health") as r:
            assert r.status == 200
        assert len(env.runner.runtime.sessions) == 0
        aside = list(tmp_path.glob(f"{DB_FILE}.corrupt-*"))
        assert len(aside) == 1 and aside[0].read_bytes().startswith(b"\x00garbage")
        async with await start_via_orch(env, "fresh", parameters={}) as r:
            assert r.status == 200  # the new file works


async def test_a_second_runner_on_the_same_state_dir_is_refused(tmp_path: Path) -> None:
    async with running(state_dir=tmp_path) as env:
        with pytest.raises(StateDirBusy):
            async with running(state_dir=tmp_path, with_orchestrator=False):
                pass
        async with env.http.get(f"{env.url}/health") as r:
            assert r.status == 200  # the first one is untouched


async def test_a_stream_whose_channels_are_gone_is_resumed_then_ended(tmp_path: Path) -> None:
    """A live stream left by a killed runner whose orchestrator closed its channels meanwhile:
    the resume attempt finds the control channel gone and ends the session."""
    import dataclasses

    from byoc.media_path import StreamSpec
    from byoc.resume import SessionRecorder
    from byoc.sessions import SessionTable
    from byoc.state_store import StateStore

    async with running(state_dir=tmp_path / "unused") as env:
        base = f"{env.orch_url}/ai/trickle/"  # a live stand-in without these channels
        store = StateStore(tmp_path / "state")
        store.open()
        table = SessionTable(4, 600)
        table.observers.append(SessionRecorder(store))
        session = table.admit_stream("comfystream-video", "gone")
        spec = StreamSpec(
            stream_id="gone",
            capability="comfystream-video",
            control_url=base + "gone-control",
            events_url=base + "gone-events",
            subscribe_url=base + "gone",
            publish_url=base + "gone-out",
        )
        session.stream = dataclasses.asdict(spec)
        session.transition(SessionState.READY)
        session.transition(SessionState.PROCESSING)
        store.close()  # as a kill -9 leaves it: the stream is live in the file

        async with running(state_dir=tmp_path / "state", orch_urls=(env.orch_url,)) as again:
            await wait_until(lambda: state_of(again, "gone") is SessionState.STOPPED, timeout=30)
            code, body = await status(again, "gone")
            assert code == 200 and body["status"] == "stopped" and body["resumed"] == 1
            assert not again.runner.runtime.streams.controllers
