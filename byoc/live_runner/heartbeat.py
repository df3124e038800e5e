"""Live Runner registration by heartbeat, one loop per configured orchestrator.

- The first heartbeat carries the orchestrator secret (``--live-runner-secret``, default
  ``ORCH_SECRET``); its answer gives the heartbeat secret used afterwards, and the O2R channel.
- Every heartbeat goes at the interval the orchestrator answered (now 5 s; its TTL 20 s) and
  carries our capacity, app, mode, price, GPU, version and the ids of the sessions we hold.
- 401 or 404 to a heartbeat means the orchestrator forgot us (restarted, or we were silent past
  its TTL): start again with the orchestrator secret at once, then every interval. The same
  codes to a registration are logged once and retried every interval (a live registration of
  our id from a previous run of this runner blocks ours until its TTL runs out).
- Unreachable: retry with exponential backoff up to ``--register-retry-max``.
- Every answer's ``session_ids`` is handed to ``on_answer`` (the owner reconciles against it),
  and every new registration to ``on_registered`` (the owner re-subscribes to its new O2R).
- One log line per state change; ``snapshot()`` feeds ``/health`` and ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from byoc.livepeer.live_runner import (
    HeartbeatReply,
    HeartbeatRequest,
    OrchestratorUnreachable,
    Rejected,
    heartbeat,
    unregister,
)

log = logging.getLogger(__name__)

FIRST_RETRY_S = 1.0
DEFAULT_INTERVAL_S = 5.0
UNREGISTER_TIMEOUT_S = 2.0


class HeartbeatState(str, enum.Enum):
    REGISTERING = "registering"
    REGISTERED = "registered"
    UNREACHABLE = "unreachable"
    REJECTED = "rejected"


@dataclass
class LiveRunnerOrchestrator:
    """Where the heartbeats to one orchestrator stand."""

    url: str
    state: HeartbeatState = HeartbeatState.REGISTERING
    heartbeat_secret: str = ""
    runner_facing_url: str = ""
    """The orchestrator's runner-facing base URL, from its answers (the ``orchestrator`` field)."""
    interval_s: float = DEFAULT_INTERVAL_S
    ttl_s: float = 20.0
    registrations: int = 0
    heartbeats: int = 0
    failures: int = 0
    last_ok_at: float | None = None
    last_error: str = ""
    sent_at: float = 0.0
    """When the heartbeat whose answer is being handled was sent (monotonic)."""
    nudge: asyncio.Event = field(default_factory=asyncio.Event)

    def set_state(self, state: HeartbeatState, detail: str = "") -> None:
        """Change state, logging once per change."""
        if state is self.state:
            return
        self.state = state
        if state is HeartbeatState.REGISTERED:
            log.info("live runner: registered at %s", self.url)
        elif state is HeartbeatState.UNREACHABLE:
            log.warning("live runner: orchestrator %s unreachable (%s); retrying", self.url, detail)
        elif state is HeartbeatState.REJECTED:
            log.error("live runner: orchestrator %s refused us (%s); retrying", self.url, detail)
        else:
            log.warning("live runner: registering again at %s (%s)", self.url, detail)


BuildRequest = Callable[[LiveRunnerOrchestrator], HeartbeatRequest]
OnRegistered = Callable[[LiveRunnerOrchestrator, HeartbeatReply], None]
OnAnswer = Callable[[LiveRunnerOrchestrator, HeartbeatReply], None]
OnRunnerId = Callable[[str], None]


class HeartbeatService:
    """One heartbeat loop per orchestrator (see the module docstring)."""

    def __init__(
        self,
        orch_urls: tuple[str, ...],
        first_secret: str,
        build_request: BuildRequest,
        *,
        on_registered: OnRegistered,
        on_answer: OnAnswer,
        on_runner_id: OnRunnerId,
        retry_max_s: float = 30.0,
        verify_tls: bool = False,
    ) -> None:
        self.orchestrators = [LiveRunnerOrchestrator(url.rstrip("/")) for url in orch_urls]
        self.first_secret = first_secret
        self.build_request = build_request
        self.on_registered = on_registered
        self.on_answer = on_answer
        self.on_runner_id = on_runner_id
        self.retry_max_s = retry_max_s
        self.verify_tls = verify_tls
        self.runner_id = ""
        self._tasks: list[asyncio.Task[None]] = []
        self._http: aiohttp.ClientSession | None = None

    def start(self, runner_id: str) -> None:
        self.runner_id = runner_id
        self._http = aiohttp.ClientSession()
        for orch in self.orchestrators:
            log.info("live runner: registering %s at %s", runner_id, orch.url)
            self._tasks.append(asyncio.create_task(self._run(orch), name=f"heartbeat-{orch.url}"))

    def nudge(self) -> None:
        """Send the next heartbeats now (our capacity changed)."""
        for orch in self.orchestrators:
            orch.nudge.set()

    def snapshot(self) -> dict[str, dict[str, object]]:
        now = time.monotonic()
        return {
            o.url: {
                "state": o.state.value,
                "runner_id": self.runner_id,
                "registrations": o.registrations,
                "heartbeats": o.heartbeats,
                "seconds_since_heartbeat": None
                if o.last_ok_at is None
                else round(now - o.last_ok_at, 1),
                "last_error": o.last_error or None,
            }
            for o in self.orchestrators
        }

    async def stop(self, *, unregister_all: bool = True) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._http is None:
            return
        try:
            if unregister_all:
                await asyncio.gather(
                    *(
                        self._unregister(o)
                        for o in self.orchestrators
                        if o.state is HeartbeatState.REGISTERED and o.heartbeat_secret
                    )
                )
        finally:
            await self._http.close()
            self._http = None

    # --- internals -------------------------------------------------------------------------

    async def _unregister(self, orch: LiveRunnerOrchestrator) -> None:
        assert self._http is not None
        try:
            await unregister(
                self._http,
                orch.url,
                self.runner_id,
                orch.heartbeat_secret,
                timeout_s=UNREGISTER_TIMEOUT_S,
                verify_tls=self.verify_tls,
            )
            log.info("live runner: unregistered %s from %s", self.runner_id, orch.url)
        except (OrchestratorUnreachable, Rejected) as exc:
            log.warning("live runner: could not unregister from %s: %s", orch.url, exc)

    async def _run(self, orch: LiveRunnerOrchestrator) -> None:
        backoff = min(FIRST_RETRY_S, self.retry_max_s)
        while True:
            orch.nudge.clear()
            registering = not orch.heartbeat_secret
            secret = self.first_secret if registering else orch.heartbeat_secret
            assert self._http is not None
            orch.sent_at = time.monotonic()
            try:
                reply = await heartbeat(
                    self._http,
                    orch.url,
                    secret,
                    self.build_request(orch),
                    verify_tls=self.verify_tls,
                )
            except OrchestratorUnreachable as exc:
                orch.failures += 1
                orch.last_error = str(exc)
                orch.set_state(HeartbeatState.UNREACHABLE, str(exc))
                await self._sleep(orch, backoff)
                backoff = min(backoff * 2, self.retry_max_s)
                continue
            except Rejected as exc:
                orch.failures += 1
                orch.last_error = str(exc)
                if not registering and exc.status in (401, 404):
                    # The orchestrator forgot us: register again, with its secret, right away.
                    orch.heartbeat_secret = ""
                    orch.set_state(HeartbeatState.REGISTERING, f"heartbeat answered {exc}")
                    continue
                orch.set_state(HeartbeatState.REJECTED, str(exc))
                await self._sleep(orch, orch.interval_s)
                continue
            backoff = min(FIRST_RETRY_S, self.retry_max_s)
            self._accept(orch, reply, registering)
            await self._sleep(orch, orch.interval_s)

    def _accept(
        self, orch: LiveRunnerOrchestrator, reply: HeartbeatReply, registering: bool
    ) -> None:
        orch.interval_s = reply.interval_s
        orch.ttl_s = reply.ttl_s
        orch.runner_facing_url = reply.orchestrator or orch.url
        orch.last_ok_at = time.monotonic()
        orch.last_error = ""
        orch.heartbeats += 1
        if reply.runner_id != self.runner_id:
            log.info("live runner: %s calls us %s", orch.url, reply.runner_id)
            self.runner_id = reply.runner_id
            self.on_runner_id(reply.runner_id)
        if registering or reply.heartbeat_secret:
            if reply.heartbeat_secret:
                orch.heartbeat_secret = reply.heartbeat_secret
            orch.registrations += 1
            self.on_registered(orch, reply)
        orch.set_state(HeartbeatState.REGISTERED)
        self.on_answer(orch, reply)

    @staticmethod
    async def _sleep(orch: LiveRunnerOrchestrator, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(orch.nudge.wait(), seconds)
