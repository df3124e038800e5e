"""One capacity for both control planes: ``--capacity`` streams, whoever started them.

A slot is taken by every live stream session (BYOC or Live Runner) and by every Live Runner
session that is reserved but has not started its stream yet. The Live Runner heartbeat
advertises ``held + free`` (its sessions plus the slots still free), so the orchestrator stops
reserving when BYOC streams took the rest; when that sum would be 0 the orchestrator would read
it as 1, so a reservation may still come, and the runner answers its stream start with 503.
"""

from __future__ import annotations

from byoc.live_runner.sessions import ActiveSessions
from byoc.sessions import SessionTable


class SharedCapacity:
    """Slots of the session table shared with the Live Runner reservations."""

    def __init__(self, sessions: SessionTable, active: ActiveSessions) -> None:
        self.sessions = sessions
        self.active = active

    def reserved_without_stream(self) -> int:
        """Live Runner sessions holding a slot whose stream is not live (not started yet)."""
        count = 0
        for reserved in self.active:
            if not reserved.slotted:
                continue
            stream = self.sessions.get(reserved.id)
            if stream is None or not stream.live:
                count += 1
        return count

    def in_use(self) -> int:
        """Slots taken: live streams plus reservations waiting for theirs."""
        return self.sessions.live_streams() + self.reserved_without_stream()

    def free(self) -> int:
        return max(0, self.sessions.capacity - self.in_use())

    def heartbeat_capacity(self) -> int:
        """The ``capacity`` of a Live Runner heartbeat: our sessions held plus the free slots."""
        return self.active.held() + self.free()
