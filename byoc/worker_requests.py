"""How the parent asks its workers: send a request with an id, await the replies that carry it.

Streams (``StreamStart``/``StreamUpdate`` answered by one ``StreamReply``) and jobs (``JobRequest``
answered by ``JobProgress`` messages and one ``JobResult``) go through the same ``WorkerRequests``.
When the worker's process ends (killed, crashed, hung and replaced), every request it held fails
at once with ``WorkerLost`` (answered as 503), so no caller waits out a reply timeout for an
answer that cannot come: a restarted worker knows nothing of what its predecessor was asked.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Protocol

from ipc.channel import ChannelClosed
from ipc.messages import Message

log = logging.getLogger(__name__)


class WorkerUnavailable(Exception):
    """The worker is not ready (starting, restarting or stopped); answered as 503."""


class WorkerLost(WorkerUnavailable):
    """The worker died or restarted while the request was pending; answered as 503."""


class ReplyTimeout(Exception):
    """The worker did not answer in time."""


@dataclass
class PendingRequest:
    """A request sent to ``worker``; its replies arrive in ``replies`` in order."""

    request_id: str
    worker: str
    replies: asyncio.Queue[Message | WorkerLost] = field(default_factory=asyncio.Queue)


class WorkerLink(Protocol):
    """What requests need of the supervisor."""

    async def send(self, worker: str, message: Message) -> None: ...

    def is_ready(self, worker: str) -> bool: ...


class WorkerRequests:
    """The one request/reply path between the parent and its workers (the supervisor owns one,
    routes the replies to ``deliver`` and calls ``fail_worker`` when a worker's process ends)."""

    def __init__(self, supervisor: WorkerLink) -> None:
        self._supervisor = supervisor
        self._pending: dict[str, PendingRequest] = {}

    def in_flight(self, worker: str | None = None) -> int:
        """Requests still waiting for their final reply (of ``worker``, or of all)."""
        return sum(1 for p in self._pending.values() if worker is None or p.worker == worker)

    async def send(self, worker: str, message: Message, request_id: str) -> PendingRequest:
        """Send ``message`` (which carries ``request_id``); raise ``WorkerUnavailable`` when the
        worker cannot take it now."""
        if request_id in self._pending:
            raise ValueError(f"request id {request_id!r} is already pending")
        if not self._ready(worker):
            raise WorkerUnavailable(f"the {worker} worker is not ready")
        pending = PendingRequest(request_id, worker)
        self._pending[request_id] = pending
        try:
            await self._supervisor.send(worker, message)
        except (ChannelClosed, OSError) as exc:
            self._pending.pop(request_id, None)
            raise WorkerUnavailable(f"the {worker} worker is not ready: {exc}") from exc
        return pending

    async def next_reply(self, pending: PendingRequest, timeout: float) -> Message:
        """The next reply to ``pending``; raises ``ReplyTimeout`` or ``WorkerLost``."""
        try:
            reply = await asyncio.wait_for(pending.replies.get(), max(0.0, timeout))
        except asyncio.TimeoutError:
            raise ReplyTimeout(
                f"the {pending.worker} worker did not answer within {timeout:.0f}s"
            ) from None
        if isinstance(reply, WorkerLost):
            raise reply
        return reply

    async def ask(self, worker: str, message: Message, request_id: str, timeout: float) -> Message:
        """Send one request and return its one reply."""
        pending = await self.send(worker, message, request_id)
        try:
            return await self.next_reply(pending, timeout)
        finally:
            self.forget(pending)

    def deliver(self, request_id: str, reply: Message, *, final: bool) -> bool:
        """Hand a worker's reply to the request it answers (``final``: the last one); False when
        nobody waits for it any more (it timed out, or its caller went away)."""
        pending = self._pending.get(request_id)
        if pending is None:
            log.debug("late %s for request %s dropped", type(reply).__name__, request_id)
            return False
        if final:
            del self._pending[request_id]
        pending.replies.put_nowait(reply)
        return True

    def forget(self, pending: PendingRequest) -> None:
        """Stop routing replies to ``pending``."""
        if self._pending.get(pending.request_id) is pending:
            del self._pending[pending.request_id]

    def fail_worker(self, worker: str, reason: str) -> int:
        """Fail every request ``worker`` held with ``WorkerLost(reason)``; return how many."""
        lost = [p for p in self._pending.values() if p.worker == worker]
        for pending in lost:
            del self._pending[pending.request_id]
            pending.replies.put_nowait(WorkerLost(reason))
        if lost:
            log.warning("%d request(s) to the %s worker failed: %s", len(lost), worker, reason)
        return len(lost)

    def _ready(self, worker: str) -> bool:
        try:
            return self._supervisor.is_ready(worker)
        except KeyError:  # no such worker in this runner
            return False
