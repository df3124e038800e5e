"""Sessions across runner restarts: the session table written to the state store, and read back.

``SessionRecorder`` observes the ``SessionTable`` and queues every change for the store.
``restore_sessions`` puts a previous run's sessions back into the table when the runner starts:

- ended sessions stay readable until their retention time runs out;
- live trickle streams (a ``subscribe_url``, no uploaded clip) are returned to be **resumed**:
  their session is back in ``starting`` with its history kept and ``resumed`` counted, and the
  caller starts their media path again (input at the live edge, output at the channel's next
  segment). A stream whose channels are gone ends through the usual paths (control 404, ...);
- every other live session (an uploaded clip half processed, a one-shot job, WebRTC media whose
  peers were lost with the process) is marked ``failed``: its work cannot be picked up again.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from byoc.media_path import StreamSpec
from byoc.sessions import TERMINAL_STATES, Session, SessionKind, SessionState, SessionTable
from byoc.state_store import StateStore

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted by a runner restart"
_SPEC_FIELDS = frozenset(f.name for f in dataclasses.fields(StreamSpec))


class SessionRecorder:
    """Writes every session change of the table to the state store (queued, off the loop)."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def session_changed(self, session: Session) -> None:
        if self.store.is_open:  # a late change while the runner stops is not kept
            self.store.save_session(
                session.id, session.state.value, session.ended_at, record(session)
            )

    def session_removed(self, session_id: str) -> None:
        if self.store.is_open:
            self.store.delete_session(session_id)


def record(session: Session) -> dict[str, Any]:
    """A session as a JSON document."""
    return {
        "id": session.id,
        "capability": session.capability,
        "kind": session.kind.value,
        "state": session.state.value,
        "created_at": session.created_at,
        "updated_at": session.updated_at,
        "ended_at": session.ended_at,
        "transitions": [list(t) for t in session.transitions],
        "params": session.params,
        "result": session.result,
        "error": session.error,
        "external_id": session.external_id,
        "control_plane": session.control_plane,
        "restarts": session.restarts,
        "resumed": session.resumed,
        "stream": session.stream,
    }


def from_record(doc: dict[str, Any]) -> Session:
    """The session a document describes, exactly as it was recorded (raises on a bad one)."""
    session = Session(
        id=str(doc["id"]),
        capability=str(doc["capability"]),
        kind=SessionKind(doc["kind"]),
        state=SessionState(doc["state"]),
        created_at=float(doc["created_at"]),
    )
    session.updated_at = float(doc.get("updated_at") or session.created_at)
    ended_at = doc.get("ended_at")
    session.ended_at = None if ended_at is None else float(ended_at)
    session.transitions = [(str(state), float(at)) for state, at in doc.get("transitions") or []]
    session.params = dict(doc.get("params") or {})
    session.result = doc.get("result")
    session.error = doc.get("error")
    session.external_id = bool(doc.get("external_id"))
    session.control_plane = str(doc.get("control_plane") or "byoc")
    session.restarts = int(doc.get("restarts") or 0)
    session.resumed = int(doc.get("resumed") or 0)
    stream = doc.get("stream")
    session.stream = dict(stream) if isinstance(stream, dict) else None
    return session


def resumable_spec(session: Session) -> StreamSpec | None:
    """The spec to start a live trickle stream again, or None when it cannot be resumed."""
    stream = session.stream
    if session.kind is not SessionKind.STREAM or not stream:
        return None
    if not stream.get("subscribe_url") or stream.get("source_path"):
        return None
    values = {k: v for k, v in stream.items() if k in _SPEC_FIELDS}
    values["params"] = dict(session.params)  # the latest params, updates included
    try:
        return StreamSpec(**values)
    except TypeError:
        return None


@dataclass
class Restored:
    """What ``restore_sessions`` did."""

    ended: int = 0
    expired: list[str] = field(default_factory=list)
    """Ended sessions past their retention time: not restored (the caller deletes them)."""
    interrupted: list[str] = field(default_factory=list)
    resume: list[tuple[Session, StreamSpec]] = field(default_factory=list)


def restore_sessions(
    table: SessionTable, docs: list[dict[str, Any]], now: float | None = None
) -> Restored:
    """Put stored sessions back into ``table``; return the live streams to resume."""
    now = time.time() if now is None else now
    done = Restored()
    for doc in docs:
        try:
            session = from_record(doc)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("stored session %s is unusable (%s), dropped", doc.get("id"), exc)
            continue
        if session.state in TERMINAL_STATES:
            if session.ended_at is not None and now - session.ended_at >= table.retention_s:
                done.expired.append(session.id)
                continue
            table.restore(session)
            done.ended += 1
            continue
        spec = resumable_spec(session)
        if spec is None:
            table.restore(session)
            session.transition(SessionState.FAILED, error=INTERRUPTED)
            done.interrupted.append(session.id)
            continue
        session.state = SessionState.STARTING
        session.updated_at = now
        session.transitions.append((SessionState.STARTING.value, now))
        session.resumed += 1
        table.restore(session)
        done.resume.append((session, spec))
    return done
