"""Reader of an orchestrator-to-runner (O2R) channel: a trickle channel on the orchestrator, one
JSON message a segment, read from seq 0.

Messages: ``{"keep":"alive"}`` (every 10 s), ``{"event":"reserved","session":id,...}`` and
``{"event":"released","session":id,...}``. Delivery is best effort (the orchestrator drops
messages when its queue is full), so the heartbeat answers' ``session_ids`` stay the truth; this
reader only makes reservations and releases take effect before the next heartbeat.

Each registration gets a new channel: the owner closes the old reader and starts a new one after
every re-registration (a reader of the old channel would wait forever).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from byoc.livepeer.trickle import SubscribeError, TrickleSubscriber, read_json_segments

log = logging.getLogger(__name__)

SessionCallback = Callable[[str], None]


class O2RReader:
    """Follows one O2R channel until it ends or ``close`` is called."""

    def __init__(
        self,
        url: str,
        orchestrator: str,
        *,
        on_reserved: SessionCallback,
        on_released: SessionCallback,
        verify_tls: bool = False,
    ) -> None:
        self.url = url
        self.orchestrator = orchestrator
        self.on_reserved = on_reserved
        self.on_released = on_released
        self.messages = 0
        self.last_message_at: float | None = None
        self.ended = False
        self._subscriber = TrickleSubscriber(url, start_seq=0, verify_tls=verify_tls)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"o2r-{self.orchestrator}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._subscriber.close()

    async def _run(self) -> None:
        try:
            async for message in read_json_segments(self._subscriber, skip_keepalive=False):
                self.messages += 1
                self.last_message_at = time.monotonic()
                self._dispatch(message)
        except SubscribeError as exc:
            log.warning("o2r %s: channel unreachable: %s", self.orchestrator, exc)
        finally:
            self.ended = True
        log.info("o2r %s: channel ended", self.orchestrator)

    def _dispatch(self, message: Any) -> None:
        if not isinstance(message, dict):
            log.warning("o2r %s: message is not a JSON object, ignored", self.orchestrator)
            return
        if message.get("keep") == "alive":
            return
        event, session_id = message.get("event"), message.get("session")
        if not isinstance(session_id, str) or not session_id:
            log.warning("o2r %s: %s message without a session, ignored", self.orchestrator, event)
            return
        if event == "reserved":
            self.on_reserved(session_id)
        elif event == "released":
            self.on_released(session_id)
        else:
            log.info(
                "o2r %s: unknown event %r for session %s", self.orchestrator, event, session_id
            )
