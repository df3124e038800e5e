"""The runner's persistent state: one SQLite file (WAL) in the state directory.

Two tables: ``sessions`` (one JSON document per session, with its id, state and end time as
columns) and ``kv`` (small named values that must outlive the process, e.g. a control plane's
runner id). Writes go through one writer thread, so nothing on the event loop ever blocks on
the disk; reads happen once, when the store opens.

The directory is locked (``flock`` on ``state.lock``) for the life of the runner: a second
runner on the same directory gets ``StateDirBusy``. A file SQLite cannot read is moved aside
(``state.db.corrupt-<UTC time>``) and the runner starts empty: a damaged state file costs the
history, never the start.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DB_FILE = "state.db"
LOCK_FILE = "state.lock"
SCHEMA_VERSION = 1
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS sessions ("
    " id TEXT PRIMARY KEY, state TEXT NOT NULL, ended_at REAL, document TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


class StateDirBusy(RuntimeError):
    """Another runner holds the state directory."""


@dataclass
class LoadedState:
    """What the store held when it opened."""

    sessions: list[dict[str, Any]] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    moved_aside: Path | None = None
    """Where an unreadable state file was moved (None when it was fine or absent)."""


_Write = Callable[[sqlite3.Connection], object]


class StateStore:
    """Sessions and named values in ``directory/state.db``; every write off the caller's thread."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / DB_FILE
        self._lock_fd: int | None = None
        self._conn: sqlite3.Connection | None = None
        self._queue: queue.Queue[_Write | threading.Event | None] = queue.Queue()
        self._writer: threading.Thread | None = None
        self._values: dict[str, Any] = {}
        self.write_errors = 0

    # --- open / close ---------------------------------------------------------------------

    def open(self) -> LoadedState:
        """Lock the directory, read what is stored, start the writer (blocking: call it in a
        thread from async code). Raises ``StateDirBusy`` when another runner holds it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            loaded = self._load_or_move_aside()
        except BaseException:
            self._unlock()
            raise
        self._values = dict(loaded.values)
        self._writer = threading.Thread(target=self._write_loop, name="state-writer", daemon=True)
        self._writer.start()
        return loaded

    def close(self) -> None:
        """Write what is queued, stop the writer, close the file and release the lock."""
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join()
            self._writer = None
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()
            self._conn = None
        self._unlock()

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    def flush(self, timeout: float = 30.0) -> bool:
        """Block until every write queued so far is on disk; False on timeout."""
        if self._writer is None:
            return True
        done = threading.Event()
        self._queue.put(done)  # set by the writer once what came before is committed
        return done.wait(timeout)

    # --- writes (queued) ------------------------------------------------------------------

    def save_session(
        self, session_id: str, state: str, ended_at: float | None, doc: dict[str, Any]
    ) -> None:
        """Insert or replace one session's document."""
        text = json.dumps(doc, default=str)
        self._submit(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO sessions (id, state, ended_at, document) VALUES (?,?,?,?)",
                (session_id, state, ended_at, text),
            )
        )

    def delete_session(self, session_id: str) -> None:
        self._submit(lambda conn: conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,)))

    def set_value(self, key: str, value: Any) -> None:
        """Keep a named JSON value (read back with ``value`` now and after a restart)."""
        self._values[key] = value
        text = json.dumps(value)
        self._submit(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, text)
            )
        )

    def value(self, key: str, default: Any = None) -> Any:
        return self._values.get(key, default)

    def _submit(self, write: _Write) -> None:
        if self._writer is None:
            raise RuntimeError("state store is not open")
        self._queue.put(write)

    # --- the writer thread ----------------------------------------------------------------

    def _write_loop(self) -> None:
        assert self._conn is not None
        conn = self._conn
        while True:
            batch = [self._queue.get()]
            with contextlib.suppress(queue.Empty):
                while len(batch) < 512:
                    batch.append(self._queue.get_nowait())
            stop = None in batch
            try:
                with conn:  # one transaction per batch
                    for write in batch:
                        if write is not None and not isinstance(write, threading.Event):
                            write(conn)
            except sqlite3.Error:
                self.write_errors += 1
                log.exception("state store: a write to %s failed", self.path)
            for item in batch:
                if isinstance(item, threading.Event):
                    item.set()
            if stop:
                return

    # --- internals ------------------------------------------------------------------------

    def _lock(self) -> None:
        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise StateDirBusy(
                f"state directory {self.directory} is in use by another runner (pid {holder}); "
                "give each runner its own --state-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    def _load_or_move_aside(self) -> LoadedState:
        try:
            return self._connect_and_load()
        except sqlite3.DatabaseError as exc:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            aside = self._move_aside()
            log.error(
                "state store: %s is unreadable (%s); moved it to %s and starting empty",
                self.path,
                exc,
                aside,
            )
            loaded = self._connect_and_load()
            loaded.moved_aside = aside
            return loaded

    def _connect_and_load(self) -> LoadedState:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level="DEFERRED")
        self._conn = conn
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        check = conn.execute("PRAGMA quick_check").fetchone()
        if check is None or check[0] != "ok":
            raise sqlite3.DatabaseError(f"integrity check: {check[0] if check else 'no answer'}")
        with conn:
            for statement in SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        loaded = LoadedState()
        for session_id, text in conn.execute("SELECT id, document FROM sessions ORDER BY rowid"):
            try:
                doc = json.loads(text)
            except ValueError:
                log.warning("state store: session %s has an unreadable record, skipped", session_id)
                continue
            if isinstance(doc, dict):
                loaded.sessions.append(doc)
        for key, text in conn.execute("SELECT key, value FROM kv"):
            with contextlib.suppress(ValueError):
                loaded.values[key] = json.loads(text)
        return loaded

    def _move_aside(self) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = self.path.with_name(f"{DB_FILE}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                source.replace(Path(f"{aside}{suffix}"))
        return aside
