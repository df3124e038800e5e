"""The Live Runner control plane of one runner: heartbeats, O2R readers, the active set, the
idle timeout, and what a release does (stop the session's stream, free its slot).

Releases come from four places and all end the same way (``release``): an O2R ``released``
message, a heartbeat answer that no longer lists the session (after an orchestrator restart,
every session), the idle timeout (no request and no media for ``--live-runner-idle-timeout``;
the orchestrator is then asked to release it too), and the client's stop through the proxy.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from byoc.live_runner.capacity import SharedCapacity
from byoc.live_runner.heartbeat import HeartbeatService, LiveRunnerOrchestrator
from byoc.live_runner.o2r import O2RReader
from byoc.live_runner.sessions import ActiveSession, ActiveSessions
from byoc.livepeer.live_runner import (
    HeartbeatReply,
    HeartbeatRequest,
    LiveRunnerError,
    stop_session,
)
from byoc.sessions import Session, SessionTable
from byoc.settings import Settings
from byoc.state_store import StateStore
from byoc.streams import StreamManager
from ipc.messages import StreamStats

log = logging.getLogger(__name__)

CONTROL_PLANE = "live-runner"
RUNNER_ID_KEY = "live_runner.runner_id"
IDLE_CHECK_MAX_S = 5.0
STOP_CALLBACK_TIMEOUT_S = 3.0
RELEASED_IDS_KEPT = 4096


def new_runner_id() -> str:
    """A runner id for a first start: safe in URL paths, unguessable enough to stay ours."""
    return "comfystream-" + secrets.token_hex(6)


def detect_gpu() -> dict[str, Any] | None:
    """The first GPU as ``{id, name, vram_mb}`` from ``nvidia-smi`` (the parent never imports
    torch), or None without one."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=index,name,memory.total",
                "--format=csv,noheader,nounits",
            ],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
        index, name, memory = (part.strip() for part in out.splitlines()[0].split(","))
        return {"id": index, "name": name, "vram_mb": int(float(memory))}
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def runner_version() -> str:
    try:
        return "comfystream-byoc/" + importlib.metadata.version("comfystream-byoc")
    except importlib.metadata.PackageNotFoundError:
        return "comfystream-byoc"


class LiveRunnerControlPlane:
    """Everything the Live Runner protocol needs on the runner side (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        sessions: SessionTable,
        streams: StreamManager,
        *,
        draining: Callable[[], bool] = lambda: False,
        state_store: StateStore | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.streams = streams
        self.draining = draining
        self.state_store = state_store
        self.active = ActiveSessions()
        self.capacity = SharedCapacity(sessions, self.active)
        self.runner_url = settings.live_runner_url
        self.gpu: dict[str, Any] | None = None
        self.version = runner_version()
        self.heartbeats = HeartbeatService(
            settings.live_runner_orch_urls,
            settings.live_runner_first_secret,
            self._heartbeat_request,
            on_registered=self._on_registered,
            on_answer=self._on_answer,
            on_runner_id=self._keep_runner_id,
            retry_max_s=settings.register_retry_max_s,
            verify_tls=settings.trickle_verify_tls,
        )
        self.released = 0
        self.idle_released = 0
        self._released_ids: dict[str, None] = {}  # insertion-ordered, oldest dropped first
        self._readers: dict[str, O2RReader] = {}
        self._frames_seen: dict[str, int] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._idle_task: asyncio.Task[None] | None = None
        self.http: aiohttp.ClientSession | None = None
        sessions.held_outside = self.capacity.reserved_without_stream
        sessions.created.append(self._on_session_created)

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self, runner_url: str) -> None:
        """Start heartbeating (``runner_url``: where the orchestrators proxy app requests)."""
        self.runner_url = runner_url
        self.gpu = await asyncio.to_thread(detect_gpu)
        self.http = aiohttp.ClientSession()
        runner_id = ""
        if self.state_store is not None and self.state_store.is_open:
            runner_id = str(self.state_store.value(RUNNER_ID_KEY, "") or "")
        if not runner_id:
            runner_id = new_runner_id()
            self._keep_runner_id(runner_id)
        self.heartbeats.start(runner_id)
        self._idle_task = asyncio.create_task(self._idle_loop(), name="live-runner-idle")

    async def stop(self) -> None:
        """Stop heartbeats and readers, unregister; streams are ended by the stream manager."""
        if self._idle_task is not None:
            self._idle_task.cancel()
            await asyncio.gather(self._idle_task, return_exceptions=True)
            self._idle_task = None
        await self.heartbeats.stop()
        for reader in list(self._readers.values()):
            await reader.close()
        self._readers.clear()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self.http is not None:
            await self.http.close()
            self.http = None

    def snapshot(self) -> dict[str, Any]:
        """For ``/health``: each orchestrator's heartbeat state, and the sessions held."""
        return {
            "orchestrators": self.heartbeats.snapshot(),
            "sessions": len(self.active),
            "capacity": self.capacity.heartbeat_capacity(),
        }

    # --- heartbeat callbacks ---------------------------------------------------------------

    def _heartbeat_request(self, orch: LiveRunnerOrchestrator) -> HeartbeatRequest:
        return HeartbeatRequest(
            runner_url=self.runner_url,
            app=self.settings.live_runner_app,
            capacity=self._advertised_capacity(),
            runner_id=self.heartbeats.runner_id,
            price=self.settings.live_runner_price,
            price_unit=self.settings.live_runner_price_unit,
            version=self.version,
            gpu=self.gpu,
            session_ids=self.active.ids(orch.url),
        )

    def _advertised_capacity(self) -> int:
        if self.draining():
            return self.active.held()
        return self.capacity.heartbeat_capacity()

    def _keep_runner_id(self, runner_id: str) -> None:
        if self.state_store is not None and self.state_store.is_open:
            self.state_store.set_value(RUNNER_ID_KEY, runner_id)

    def _on_registered(self, orch: LiveRunnerOrchestrator, reply: HeartbeatReply) -> None:
        """A new registration has a new O2R channel: drop the old reader, follow the new one."""
        old = self._readers.pop(orch.url, None)
        if old is not None:
            self._spawn(old.close(), f"o2r-close-{orch.url}")
        if not reply.o2r_url:
            log.warning("live runner: %s gave no O2R channel; heartbeats only", orch.url)
            return
        reader = O2RReader(
            reply.o2r_url,
            orch.url,
            on_reserved=lambda sid: self._reserve_from_o2r(sid, orch.url),
            on_released=lambda sid: self.release_soon(sid, "released by the orchestrator"),
            verify_tls=self.settings.trickle_verify_tls,
        )
        self._readers[orch.url] = reader
        reader.start()
        log.info("live runner: following the O2R channel of %s", orch.url)

    def _on_answer(self, orch: LiveRunnerOrchestrator, reply: HeartbeatReply) -> None:
        """Reconcile with the orchestrator's authoritative ``session_ids``."""
        listed = set(reply.session_ids)
        for session_id in reply.session_ids:
            # One we released ourselves may be listed until the orchestrator has let it go.
            if session_id not in self.active and session_id not in self._released_ids:
                self.reserve(session_id, orch.url)
        for held in self.active.of(orch.url):
            # One reserved after this heartbeat was sent may simply not be listed yet.
            if held.id not in listed and held.reserved_at < orch.sent_at:
                self.release_soon(held.id, f"no longer listed by {orch.url}")
        for session in self.sessions:
            # Streams of sessions nobody holds (e.g. resumed after a restart of this runner).
            if (
                session.control_plane == CONTROL_PLANE
                and session.live
                and session.id not in self.active
            ):
                self._spawn(
                    self.streams.stop(session.id, reason="live runner session not held"),
                    f"live-runner-orphan-{session.id}",
                )

    # --- the active set --------------------------------------------------------------------

    def reserve(self, session_id: str, orchestrator: str) -> ActiveSession:
        """A session was reserved for us; it holds a slot if one is free."""
        existing = self.active.get(session_id)
        if existing is not None:
            return existing
        slotted = self.capacity.free() > 0 and not self.draining()
        session = self.active.reserve(session_id, orchestrator, slotted=slotted)
        log.info(
            "live runner session %s: reserved by %s%s",
            session_id,
            orchestrator,
            "" if slotted else " (runner full: its stream start gets 503)",
        )
        self.heartbeats.nudge()
        return session

    def _reserve_from_o2r(self, session_id: str, orchestrator: str) -> None:
        self.reserve(session_id, orchestrator)

    def release_soon(self, session_id: str, reason: str) -> None:
        if session_id in self.active:
            self._spawn(self.release(session_id, reason), f"live-runner-release-{session_id}")

    async def release(
        self, session_id: str, reason: str, *, tell_orchestrator: bool = False
    ) -> bool:
        """Drop the session from the active set and stop its stream; with
        ``tell_orchestrator``, ask the orchestrator to release it too. False if unknown."""
        held = self.active.release(session_id)
        if held is None:
            return False
        self._released_ids[session_id] = None
        while len(self._released_ids) > RELEASED_IDS_KEPT:
            del self._released_ids[next(iter(self._released_ids))]
        self.released += 1
        self._frames_seen.pop(session_id, None)
        log.info("live runner session %s: released (%s)", session_id, reason)
        await self.streams.stop(session_id, reason=f"live runner: {reason}")
        if tell_orchestrator and held.token and held.control_url and self.http is not None:
            try:
                await stop_session(
                    self.http,
                    held.control_url,
                    held.token,
                    timeout_s=STOP_CALLBACK_TIMEOUT_S,
                    verify_tls=self.settings.trickle_verify_tls,
                )
            except LiveRunnerError as exc:
                log.warning("live runner session %s: stop callback failed: %s", session_id, exc)
        self.heartbeats.nudge()
        return True

    # --- activity and idle timeout ---------------------------------------------------------

    def on_stream_stats(self, message: StreamStats) -> None:
        """Media that moves keeps a session from the idle timeout."""
        held = self.active.get(message.stream_id)
        if held is None:
            return
        frames = message.frames_in + message.frames_out
        key = f"{message.stream_id}/{message.worker}"
        if frames != self._frames_seen.get(key, 0):
            self._frames_seen[key] = frames
            held.touch()

    async def _idle_loop(self) -> None:
        timeout = self.settings.live_runner_idle_timeout_s
        while True:
            await asyncio.sleep(min(max(timeout / 4, 0.05), IDLE_CHECK_MAX_S))
            for held in self.active.idle(timeout, time.monotonic()):
                log.info(
                    "live runner session %s: no request and no media for %gs", held.id, timeout
                )
                await self.release(held.id, f"idle for {timeout:g}s", tell_orchestrator=True)
                self.idle_released += 1

    def _on_session_created(self, session: Session) -> None:
        """Capacity changed (a stream started, or will end): heartbeat soon."""
        self.heartbeats.nudge()
        session.listeners.append(self._on_session_changed)

    def _on_session_changed(self, session: Session) -> None:
        if not session.live:
            self.heartbeats.nudge()

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


__all__ = ["CONTROL_PLANE", "LiveRunnerControlPlane"]
