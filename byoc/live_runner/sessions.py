"""The Live Runner active set: sessions the orchestrators reserved for us, and their tokens.

A session enters the set when an orchestrator reserves it (an O2R ``reserved`` message, or its
id in a heartbeat answer: O2R is best effort) and leaves it when released (O2R ``released``, a
heartbeat answer that no longer lists it, our idle timeout, or the orchestrator's stop). Only
ids in the set are served by the app API.

The session token is an HMAC the runner cannot recompute (it lacks the orchestrator's seed): the
first token a session presents is pinned and confirmed once through a token-checked callback;
later requests must present the same token.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from byoc.livepeer.live_runner import Channel


@dataclass
class ActiveSession:
    """One reserved session, as this runner knows it."""

    id: str
    orchestrator: str
    """The orchestrator URL we heartbeat to (the one that reserved it)."""
    slotted: bool = True
    """Whether it holds a capacity slot; one reserved while the runner was full does not, and
    its stream start is answered 503."""
    reserved_at: float = field(default_factory=time.monotonic)
    last_activity: float = field(default_factory=time.monotonic)
    token: str = ""
    token_confirmed: bool = False
    control_url: str = ""
    channels: dict[str, Channel] = field(default_factory=dict)

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def token_matches(self, token: str) -> bool:
        return bool(self.token) and hmac.compare_digest(self.token.encode(), token.encode())


class ActiveSessions:
    """Every reserved session, keyed by the orchestrator's session id."""

    def __init__(self) -> None:
        self._sessions: dict[str, ActiveSession] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[ActiveSession]:
        return iter(list(self._sessions.values()))

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._sessions

    def get(self, session_id: str) -> ActiveSession | None:
        return self._sessions.get(session_id)

    def reserve(self, session_id: str, orchestrator: str, *, slotted: bool) -> ActiveSession:
        """Add a session (an existing one is returned unchanged)."""
        existing = self._sessions.get(session_id)
        if existing is not None:
            return existing
        session = ActiveSession(session_id, orchestrator, slotted=slotted)
        self._sessions[session_id] = session
        return session

    def release(self, session_id: str) -> ActiveSession | None:
        return self._sessions.pop(session_id, None)

    def of(self, orchestrator: str) -> list[ActiveSession]:
        """The sessions ``orchestrator`` reserved, oldest first."""
        return [s for s in self._sessions.values() if s.orchestrator == orchestrator]

    def held(self) -> int:
        """Sessions holding a capacity slot."""
        return sum(1 for s in self._sessions.values() if s.slotted)

    def ids(self, orchestrator: str) -> tuple[str, ...]:
        return tuple(s.id for s in self.of(orchestrator))

    def idle(self, timeout_s: float, now: float | None = None) -> list[ActiveSession]:
        """Sessions without a request or media for ``timeout_s``."""
        now = time.monotonic() if now is None else now
        return [s for s in self._sessions.values() if now - s.last_activity >= timeout_s]
