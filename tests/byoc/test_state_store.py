"""The state store: sessions and named values survive a reopen, writes leave the caller's thread,
an unreadable file is moved aside, and one directory takes one runner."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from byoc.state_store import DB_FILE, StateDirBusy, StateStore


def test_sessions_and_values_survive_a_reopen(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    assert store.open().sessions == []
    store.save_session("a", "processing", None, {"id": "a", "n": 1})
    store.save_session("b", "completed", 12.5, {"id": "b", "result": {"x": [1, 2]}})
    store.save_session("a", "stopped", 13.0, {"id": "a", "n": 2})  # replaces
    store.save_session("c", "failed", 14.0, {"id": "c"})
    store.delete_session("c")
    store.set_value("runner_id", "r-123")
    assert store.value("runner_id") == "r-123"
    store.close()

    again = StateStore(tmp_path)
    loaded = again.open()
    try:
        assert sorted(loaded.sessions, key=lambda d: d["id"]) == [
            {"id": "a", "n": 2},
            {"id": "b", "result": {"x": [1, 2]}},
        ]
        assert loaded.values == {"runner_id": "r-123"}
        assert again.value("runner_id") == "r-123"
        assert loaded.moved_aside is None
    finally:
        again.close()


def test_the_file_is_in_wal_mode_and_rows_carry_state_columns(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.open()
    store.save_session("a", "stopped", 3.0, {"id": "a"})
    assert store.flush()
    with sqlite3.connect(tmp_path / DB_FILE) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT id, state, ended_at FROM sessions").fetchall() == [
            ("a", "stopped", 3.0)
        ]
    store.close()


def test_writes_run_on_the_writer_thread_not_the_callers(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.open()
    seen: list[str] = []
    store._submit(lambda _conn: seen.append(threading.current_thread().name))
    assert store.flush()
    store.close()
    assert seen == ["state-writer"]


@pytest.mark.parametrize(
    "content",
    [b"this is not a database at all" * 100, b"SQLite format 3\x00" + b"\xff" * 4000],
    ids=["garbage", "damaged-header"],
)
def test_an_unreadable_file_is_moved_aside_and_the_store_starts_empty(
    tmp_path: Path, content: bytes
) -> None:
    (tmp_path / DB_FILE).write_bytes(content)
    store = StateStore(tmp_path)
    loaded = store.open()
    try:
        assert loaded.sessions == []
        assert loaded.moved_aside is not None
        assert loaded.moved_aside.read_bytes() == content
        assert loaded.moved_aside.name.startswith(f"{DB_FILE}.corrupt-")
        store.save_session("a", "stopped", 1.0, {"id": "a"})  # the fresh file works
    finally:
        store.close()
    reopened = StateStore(tmp_path)
    assert [d["id"] for d in reopened.open().sessions] == ["a"]
    reopened.close()


def test_a_record_that_is_not_json_is_skipped(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.open()
    store.save_session("good", "stopped", 1.0, {"id": "good"})
    store.close()
    with sqlite3.connect(tmp_path / DB_FILE) as conn:
        conn.execute("INSERT INTO sessions VALUES ('bad', 'stopped', 1.0, '{not json')")
    again = StateStore(tmp_path)
    assert [d["id"] for d in again.open().sessions] == ["good"]
    again.close()


def test_a_second_store_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    first = StateStore(tmp_path)
    first.open()
    try:
        with pytest.raises(StateDirBusy, match="in use by another runner"):
            StateStore(tmp_path).open()
    finally:
        first.close()
    second = StateStore(tmp_path)  # free again once the first closed
    second.open()
    second.close()


HOLD_LOCK = """
import sys, time
from pathlib import Path
from byoc.state_store import StateStore
store = StateStore(Path(sys.argv[1]))
store.open()
print("open", flush=True)
sys.stdin.read()
store.close()
"""


def test_the_lock_holds_across_processes_and_dies_with_its_holder(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with pytest.raises(StateDirBusy, match=f"pid {holder.pid}"):
            StateStore(tmp_path).open()
    finally:
        holder.kill()  # like a kill -9: the kernel releases the lock
        holder.wait(30)
    store = StateStore(tmp_path)
    store.open()
    store.close()
