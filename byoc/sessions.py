"""The parent's session table: every stream and runner-API session, its state and admission.

States and legal transitions::

    starting -> ready -> processing          (trickle media)
    starting -> connected                     (media over WebRTC; stands for ready/processing)
    any live state -> stopped | completed | failed

Terminal states never change again. Every transition is timestamped. Streams and stream-like
sessions count against ``capacity``; one-shot jobs are limited separately (``JobSlots``).
Ended sessions stay readable for ``retention_s`` and are then removed by ``sweep``.
"""

from __future__ import annotations

import enum
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)

SESSION_ID_BYTES = 16  # 128 bits
MAX_RETAINED_SESSIONS = 10_000  # ended sessions kept at most (oldest dropped first)
RESULT_BUDGET_BYTES = 64 * 1024 * 1024  # results kept for status reads, all sessions together
MAX_RESULT_BYTES = 1024 * 1024  # a larger result is answered but not kept


class SessionState(str, enum.Enum):
    STARTING = "starting"
    READY = "ready"
    PROCESSING = "processing"
    CONNECTED = "connected"
    STOPPED = "stopped"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def live(self) -> bool:
        return self in LIVE_STATES


LIVE_STATES = frozenset(
    {SessionState.STARTING, SessionState.READY, SessionState.PROCESSING, SessionState.CONNECTED}
)
TERMINAL_STATES = frozenset({SessionState.STOPPED, SessionState.COMPLETED, SessionState.FAILED})
MEDIA_READY_STATES = frozenset(
    {SessionState.READY, SessionState.PROCESSING, SessionState.CONNECTED}
)
"""Live states whose media path is set up (``pipeline_ready`` in the runner API)."""
TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    SessionState.STARTING: frozenset({SessionState.READY, SessionState.CONNECTED})
    | TERMINAL_STATES,
    SessionState.READY: frozenset({SessionState.PROCESSING, SessionState.CONNECTED})
    | TERMINAL_STATES,
    SessionState.PROCESSING: TERMINAL_STATES,
    SessionState.CONNECTED: frozenset({SessionState.PROCESSING}) | TERMINAL_STATES,
    SessionState.STOPPED: frozenset(),
    SessionState.COMPLETED: frozenset(),
    SessionState.FAILED: frozenset(),
}


class SessionKind(str, enum.Enum):
    STREAM = "stream"  # counts against capacity
    JOB = "job"  # a one-shot job; limited by JobSlots instead


class CapacityError(Exception):
    """No free slot; answered as 503."""


class TransitionError(ValueError):
    """A transition the state machine does not allow."""


def new_session_id() -> str:
    """An unguessable session id (128 bits from ``secrets``)."""
    return secrets.token_hex(SESSION_ID_BYTES)


@dataclass
class Session:
    """One session. Mutated only through ``SessionTable``/``transition`` by the parent."""

    id: str
    capability: str
    kind: SessionKind
    state: SessionState = SessionState.STARTING
    created_at: float = field(default_factory=time.time)
    updated_at: float = 0.0
    ended_at: float | None = None
    transitions: list[tuple[str, float]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    error: str | None = None
    external_id: bool = False  # the id came from the orchestrator (a stream), not from us
    control_plane: str = "byoc"  # which control plane started it: byoc or live-runner
    restarts: int = 0
    resumed: int = 0  # times the stream was resumed by a restarted runner
    stream: dict[str, Any] | None = None  # a stream's channels and media, kept to resume it
    listeners: list[Callable[[Session], None]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.updated_at = self.created_at
        self.transitions.append((self.state.value, self.created_at))

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES

    def transition(self, new: SessionState, *, error: str | None = None) -> bool:
        """Move to ``new``; False (no change) when already there or when both are terminal.

        Raises ``TransitionError`` for an illegal move between live states.
        """
        if new is self.state:
            return False
        if self.state in TERMINAL_STATES:
            log.debug(
                "session %s: ignoring %s -> %s (terminal)", self.id, self.state.value, new.value
            )
            return False
        if new not in TRANSITIONS[self.state]:
            raise TransitionError(
                f"session {self.id}: illegal transition {self.state.value} -> {new.value}"
            )
        now = time.time()
        self.state = new
        self.updated_at = now
        self.transitions.append((new.value, now))
        if new in TERMINAL_STATES:
            self.ended_at = now
        if error is not None:
            self.error = error
        log.info(
            "session %s (%s): %s%s",
            self.id,
            self.capability,
            new.value,
            f" ({error})" if error else "",
        )
        for listener in list(self.listeners):
            try:
                listener(self)
            except Exception:
                log.exception("session %s: state listener failed", self.id)
        return True

    def status(self) -> dict[str, Any]:
        """The runner API's ``/byoc/session/{id}/status`` body."""
        return {
            "session_id": self.id,
            "capability": self.capability,
            "status": self.state.value,
            "created_at": _iso(self.created_at),
            "result": self.result,
            "error": self.error,
            "history": [{"status": state, "at": _iso(at)} for state, at in self.transitions],
            "resumed": self.resumed,
            "control_plane": self.control_plane,
        }

    def stats(self) -> dict[str, Any]:
        """One entry of ``/byoc-stats``."""
        return {
            "created_at": _iso(self.created_at),
            "capability": self.capability,
            "status": self.state.value,
            "has_result": self.result is not None,
            "has_error": self.error is not None,
            "control_plane": self.control_plane,
        }


class SessionObserver(Protocol):
    """Told about every change of the table (the state store persists them)."""

    def session_changed(self, session: Session) -> None: ...

    def session_removed(self, session_id: str) -> None: ...


class SessionTable:
    """All sessions of the runner, keyed by id; enforces stream capacity."""

    def __init__(
        self,
        capacity: int,
        retention_s: float,
        *,
        max_retained: int = MAX_RETAINED_SESSIONS,
        result_budget_bytes: int = RESULT_BUDGET_BYTES,
    ) -> None:
        self.capacity = capacity
        self.retention_s = retention_s
        self.max_retained = max_retained
        self.result_budget_bytes = result_budget_bytes
        self._sessions: dict[str, Session] = {}  # insertion order = creation order
        self._result_sizes: dict[str, int] = {}
        self._result_total = 0
        self.observers: list[SessionObserver] = []
        self.created: list[Callable[[Session], None]] = []
        """Called with every new session (e.g. metrics count jobs by how they end)."""
        self.held_outside: Callable[[], int] = lambda: 0
        """Slots held by reservations that have no live stream yet (Live Runner sessions)."""

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._sessions.values()))

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def live_streams(self) -> int:
        """Live sessions that hold a capacity slot."""
        return sum(1 for s in self._sessions.values() if s.kind is SessionKind.STREAM and s.live)

    def live_count(self) -> int:
        """Every live session (streams and jobs)."""
        return sum(1 for s in self._sessions.values() if s.live)

    def admit_stream(
        self,
        capability: str,
        session_id: str | None = None,
        *,
        replacing: bool = False,
        reserved: bool = False,
        control_plane: str = "byoc",
    ) -> Session:
        """Create a stream session in ``starting``, or raise ``CapacityError``.

        ``session_id`` is the orchestrator's stream id when it gave one. With ``replacing``, a
        live session under the same id does not count (the caller ends it right after). With
        ``reserved``, the stream takes the slot its reservation already holds.
        """
        existing = self._sessions.get(session_id) if session_id else None
        in_use = self.live_streams() + self.held_outside()
        if reserved:
            in_use -= 1
        if (
            replacing
            and existing is not None
            and existing.live
            and existing.kind is SessionKind.STREAM
        ):
            in_use -= 1
        if in_use >= self.capacity:
            raise CapacityError(f"runner at capacity ({self.capacity} live sessions)")
        if existing is not None and existing.live and not replacing:
            raise ValueError(f"session {session_id} is live")
        session = Session(
            id=session_id or new_session_id(),
            capability=capability,
            kind=SessionKind.STREAM,
            external_id=session_id is not None,
            control_plane=control_plane,
        )
        self._insert(session)
        return session

    def add_job(self, capability: str) -> Session:
        """Record a one-shot job; it starts in ``processing`` (jobs have no set-up phase)."""
        session = Session(
            id=new_session_id(),
            capability=capability,
            kind=SessionKind.JOB,
            state=SessionState.PROCESSING,
        )
        self._insert(session)
        return session

    def set_result(self, session: Session, result: Any) -> None:
        """Keep ``result`` for status reads, within the per-result and total byte budgets."""
        size = len(json.dumps(result, default=str))
        if size > MAX_RESULT_BYTES:
            result = {"omitted": f"a result of {size} bytes was returned in the response only"}
            size = len(json.dumps(result))
        session.result = result
        if self._sessions.get(session.id) is session:
            self._result_total += size - self._result_sizes.get(session.id, 0)
            self._result_sizes[session.id] = size
            self.changed(session)
            self._trim()

    def remove(self, session_id: str) -> Session | None:
        self._result_total -= self._result_sizes.pop(session_id, 0)
        session = self._sessions.pop(session_id, None)
        if session is not None:
            for observer in self.observers:
                try:
                    observer.session_removed(session_id)
                except Exception:
                    log.exception("session %s: observer failed", session_id)
        return session

    def restore(self, session: Session) -> None:
        """Put back a session a previous run of the runner kept (no capacity check)."""
        self._insert(session)
        if session.result is not None:
            self.set_result(session, session.result)

    def changed(self, session: Session) -> None:
        """Tell the observers that ``session`` changed outside a transition (params, error)."""
        if self._sessions.get(session.id) is not session:
            return
        for observer in self.observers:
            try:
                observer.session_changed(session)
            except Exception:
                log.exception("session %s: observer failed", session.id)

    def _insert(self, session: Session) -> None:
        self.remove(session.id)  # a replaced id moves to the end (newest)
        self._sessions[session.id] = session
        session.listeners.append(self.changed)
        self.changed(session)
        self._trim()
        for callback in self.created:
            callback(session)

    def _trim(self) -> None:
        """Drop the oldest ended sessions beyond the count or result budgets."""
        over_count = len(self._sessions) - self.max_retained
        over_bytes = self._result_total - self.result_budget_bytes
        if over_count <= 0 and over_bytes <= 0:
            return
        victims: list[str] = []
        for session in self._sessions.values():  # oldest first
            if over_count <= 0 and over_bytes <= 0:
                break
            if session.live:
                continue
            victims.append(session.id)
            over_bytes -= self._result_sizes.get(session.id, 0)
            over_count -= 1
        for session_id in victims:
            self.remove(session_id)

    def expired(self, now: float | None = None) -> list[Session]:
        """Ended sessions older than the retention time."""
        now = time.time() if now is None else now
        return [
            s
            for s in self._sessions.values()
            if s.ended_at is not None and now - s.ended_at >= self.retention_s
        ]

    def sweep(self, now: float | None = None) -> list[str]:
        """Remove expired sessions; return their ids."""
        removed = [s.id for s in self.expired(now)]
        for session_id in removed:
            self.remove(session_id)
        if removed:
            log.info("swept %d ended session(s)", len(removed))
        return removed


class JobSlots:
    """In-flight one-shot jobs, limited to ``limit`` (503 beyond)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0

    def acquire(self) -> None:
        if self.in_flight >= self.limit:
            raise CapacityError(f"runner at job capacity ({self.limit} jobs in flight)")
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)


def _iso(timestamp: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat().replace("+00:00", "Z")
