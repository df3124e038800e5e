"""Live streams in the parent: per stream, the control subscription, the status events and the
media path's lifecycle, all tied to the stream's session.

For every stream the parent

- subscribes ``control_url``: ``{"keep":"alive"}`` only proves the channel is alive; any other
  JSON object is applied like a ``/stream/params`` body; anything unusable (not JSON, too deep,
  a number out of range, refused params) is logged and skipped, and the loop goes on;
- publishes a status event to ``events_url`` at once, then every ``events_interval_s`` and on
  every state or parameter change (format in ``byoc.stream_events``);
- ends the stream when control answers 404 or ``Lp-Trickle-Closed``, when control stays silent
  for ``control_silence_timeout_s``, when the events channel is gone, when a worker reports its
  input ended or failed, on ``/stream/stop``, on ``DELETE /byoc/session/{id}``, when a new start
  replaces it, and when the runner shuts down. Every end path goes through
  ``StreamController.end``: the media path is stopped, the subscriptions closed, a final
  event published, and the session reaches a terminal state (which frees its capacity slot).
- fails the stream (``last_error`` set) the moment one of its own tasks dies of an exception,
  rather than at the next sweep; tells the registration when its channels vanished (404), the
  sign of an orchestrator restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from byoc.livepeer.trickle import (
    ChannelClosedError,
    JsonSegmentPublisher,
    SegmentReadError,
    SegmentTooLargeError,
    SubscribeError,
    TrickleError,
    TricklePublisher,
    TrickleSubscriber,
)
from byoc.livepeer.trickle.constants import CONTENT_TYPE_JSON, KEEPALIVE_MESSAGE
from byoc.media_path import MediaPath, MediaUnavailable, ParamsRejected, StreamSpec
from byoc.sessions import CapacityError, Session, SessionState, SessionTable
from byoc.settings import Settings
from byoc.stream_events import StreamFigures, status_event
from byoc.stream_params import check_params
from ipc.deadline import within
from ipc.messages import StreamState, StreamStats, WorkerError
from ipc.untrusted_json import UntrustedJsonError, loads_untrusted

log = logging.getLogger(__name__)

MAX_CONTROL_MESSAGE_BYTES = 1024 * 1024
EVENT_SEND_TIMEOUT_S = 5.0
FINAL_EVENT_TIMEOUT_S = 2.0


class StreamNotFound(LookupError):
    """No live stream with that id."""


@dataclass(frozen=True)
class StartOutcome:
    """What ``/stream/start`` answers: the session, and an error status when the start failed."""

    session: Session
    error_status: int = 0
    error: str = ""


class StreamController:
    """One live stream: its session, control subscription, events and media path."""

    def __init__(
        self,
        manager: StreamManager,
        session: Session,
        spec: StreamSpec,
    ) -> None:
        self.manager = manager
        self.session = session
        self.spec = spec
        self.id = session.id
        self.figures = StreamFigures()
        self.last_control_at = time.monotonic()
        self._settings = manager.settings
        self._wake = asyncio.Event()
        self._params_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._setup: asyncio.Task[None] | None = None
        self._ended: asyncio.Future[None] | None = None
        self._media_started = False
        # Runner-API sessions may come without control and events channels.
        self._events = (
            JsonSegmentPublisher(
                TricklePublisher(
                    spec.events_url,
                    CONTENT_TYPE_JSON,
                    verify_tls=self._settings.trickle_verify_tls,
                    delete_on_close=False,  # the orchestrator owns its channels
                    # A resumed stream goes on where the channel stands, not at seq 0.
                    start_seq=None if session.resumed else 0,
                    reset=bool(session.resumed),
                )
            )
            if spec.events_url
            else None
        )
        session.listeners.append(self._on_state_change)
        session.stream = dataclasses.asdict(spec)  # kept by the state store, to resume it
        manager.sessions.changed(session)

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Start events, control and the media set-up; return the set-up task."""
        self._tasks = []
        if self._events is not None:
            self._tasks.append(
                asyncio.create_task(self._events_loop(), name=f"stream-events-{self.id}")
            )
        if self.spec.control_url:
            self._tasks += [
                asyncio.create_task(self._control_loop(), name=f"stream-control-{self.id}"),
                asyncio.create_task(self._silence_watch(), name=f"stream-silence-{self.id}"),
            ]
        for task in self._tasks:
            task.add_done_callback(self._on_task_done)
        self._setup = asyncio.create_task(self._set_up(), name=f"stream-setup-{self.id}")
        return self._setup

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        """A stream task that dies of an exception fails the stream now, not at the next sweep."""
        if task.cancelled() or self._ended is not None:
            return
        exc = task.exception()
        if exc is None:
            return
        log.error("stream %s: task %s died: %r", self.id, task.get_name(), exc, exc_info=exc)
        error = f"{task.get_name()} died: {type(exc).__name__}: {exc}"[:500]
        self._end_soon(SessionState.FAILED, error, error=error)

    @property
    def ended(self) -> bool:
        return self._ended is not None

    def tasks_alive(self) -> bool:
        """False when a background task of this live stream died (a bug or a lost resource)."""
        return all(not t.done() for t in self._tasks)

    async def end(self, state: SessionState, reason: str, *, error: str | None = None) -> None:
        """End the stream (idempotent; concurrent callers wait for the first one to finish)."""
        if self._ended is not None:
            await asyncio.shield(self._ended)
            return
        self._ended = asyncio.get_running_loop().create_future()
        try:
            log.info("stream %s: ending (%s)", self.id, reason)
            current = asyncio.current_task()
            tasks = [t for t in (*self._tasks, self._setup) if t is not None and t is not current]
            await _cancel_and_wait(tasks)
            if self._media_started or self._setup is not None:
                try:
                    await self.manager.media.stop(self.id, reason)
                except Exception:
                    log.exception("stream %s: media path stop failed", self.id)
            self.session.transition(state, error=error)
            if self._events is not None:
                await self._send_final_event()
                await self._events.close()
        finally:
            self.manager._forget(self)
            self._ended.set_result(None)

    # --- params ----------------------------------------------------------------------------

    async def update_params(self, raw: Any, *, source: str) -> dict[str, Any]:
        """Check and apply a params update; raise ``ParamsRejected`` for a 400."""
        params = check_params(raw, max_side=self._settings.max_image_side)
        async with self._params_lock:
            if self.ended:
                raise StreamNotFound(self.id)
            await self.manager.media.update(self.id, params)
            self.session.params = {**self.session.params, **params}
            self.manager.sessions.changed(self.session)
        log.info(
            "stream %s: params updated from %s (%s)", self.id, source, ", ".join(params) or "empty"
        )
        self._wake.set()
        return self.session.params

    # --- worker reports --------------------------------------------------------------------

    def on_stream_state(self, message: StreamState) -> None:
        state = message.state
        if state == "processing":
            if self.session.state is SessionState.STARTING:
                self.session.transition(SessionState.READY)
            if self.session.state in (SessionState.READY, SessionState.CONNECTED):
                self.session.transition(SessionState.PROCESSING)
        elif state == "connected" and self.session.state is SessionState.STARTING:
            self.session.transition(SessionState.CONNECTED)
        elif state == "ended":
            self._end_soon(SessionState.STOPPED, f"{message.worker}: input ended")
        elif state == "completed":
            if self.spec.output_path and message.worker != "egress":
                return  # the input is done; the session is once its output file is
            self._end_soon(SessionState.COMPLETED, f"{message.worker}: input finished")
        elif state == "failed":
            error = message.error or f"{message.worker} failed"
            self._end_soon(SessionState.FAILED, error, error=error)

    def on_stats(self, message: StreamStats) -> None:
        self.figures.update(message)

    def on_error(self, message: WorkerError) -> None:
        self.session.error = f"{message.worker}: {message.message}"
        self.manager.sessions.changed(self.session)
        self._wake.set()

    def on_worker_restart(self, worker: str) -> None:
        self.session.restarts += 1
        self._wake.set()

    # --- internals -------------------------------------------------------------------------

    def _end_soon(self, state: SessionState, reason: str, *, error: str | None = None) -> None:
        if self._ended is None:
            self.manager._spawn(self.end(state, reason, error=error), name=f"stream-end-{self.id}")

    def _on_state_change(self, session: Session) -> None:
        self._wake.set()

    async def _set_up(self) -> None:
        self._media_started = True
        await self.manager.media.start(self.spec)
        if self.session.state is SessionState.STARTING:
            self.session.transition(SessionState.READY)

    def event(self) -> dict[str, Any]:
        return status_event(
            stream_id=self.id,
            state=self.session.state.value,
            params=self.session.params,
            figures=self.figures,
            restarts=self.session.restarts,
            last_error=self.session.error,
            resumed=self.session.resumed,
        )

    async def _send_event(self) -> None:
        assert self._events is not None
        await asyncio.wait_for(self._events.send(self.event()), EVENT_SEND_TIMEOUT_S)

    async def _events_loop(self) -> None:
        interval = self._settings.events_interval_s
        try:
            while self._ended is None:  # also ends if a cancellation got swallowed below us
                self._wake.clear()
                try:
                    await self._send_event()
                except asyncio.TimeoutError:
                    log.warning(
                        "stream %s: status event not sent within %.0fs",
                        self.id,
                        EVENT_SEND_TIMEOUT_S,
                    )
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), interval)
        except ChannelClosedError:
            self._end_soon(SessionState.STOPPED, "events channel closed")
        except TrickleError as exc:
            self._end_soon(SessionState.STOPPED, f"events channel unusable: {exc}")

    async def _send_final_event(self) -> None:
        try:
            assert self._events is not None
            await asyncio.wait_for(self._events.send(self.event()), within(FINAL_EVENT_TIMEOUT_S))
        except (asyncio.TimeoutError, TrickleError, aiohttp.ClientError, OSError) as exc:
            log.info("stream %s: final event not sent (%s)", self.id, type(exc).__name__)

    async def _control_loop(self) -> None:
        subscriber = TrickleSubscriber(
            self.spec.control_url, verify_tls=self._settings.trickle_verify_tls
        )
        try:
            async for segment in subscriber:
                self.last_control_at = time.monotonic()
                try:
                    data = await segment.read_all(MAX_CONTROL_MESSAGE_BYTES)
                except (SegmentReadError, SegmentTooLargeError) as exc:
                    log.warning("stream %s: control segment dropped: %s", self.id, exc)
                    continue
                self.last_control_at = time.monotonic()
                try:
                    await self._on_control(data)
                except Exception:
                    # One bad message must not end the loop that applies all the later ones.
                    log.exception("stream %s: control message failed, skipped", self.id)
        except SubscribeError as exc:
            self._end_soon(SessionState.STOPPED, f"control channel unreachable: {exc}")
            self.manager.channels_lost(self.spec.control_url)
            return
        finally:
            await subscriber.close()
        self._end_soon(SessionState.STOPPED, "control channel closed")
        if subscriber.not_found:  # gone without a stop: the orchestrator may have restarted
            self.manager.channels_lost(self.spec.control_url)

    async def _on_control(self, data: bytes) -> None:
        if not data.strip():
            return
        try:
            message = loads_untrusted(data, what="control message", max_bytes=len(data))
        except UntrustedJsonError as exc:
            log.warning("stream %s: control message ignored: %s", self.id, exc)
            return
        if message == KEEPALIVE_MESSAGE:
            return
        if not isinstance(message, dict):
            log.warning("stream %s: control message is not a JSON object, ignored", self.id)
            return
        try:
            await self.update_params(message, source="control channel")
        except ParamsRejected as exc:
            log.warning("stream %s: control params rejected: %s", self.id, exc)
            self.session.error = f"params rejected: {exc}"
            self._wake.set()
        except StreamNotFound:
            return

    async def _silence_watch(self) -> None:
        limit = self._settings.control_silence_timeout_s
        while True:
            silent = time.monotonic() - self.last_control_at
            if silent >= limit:
                self._end_soon(SessionState.STOPPED, f"control channel silent for {limit:g}s")
                return
            await asyncio.sleep(min(limit - silent, max(limit / 4, 0.05)))


async def _cancel_and_wait(tasks: list[asyncio.Task[None]], rounds: int = 10) -> None:
    """Cancel ``tasks`` and wait for them; cancel again any that swallowed the cancellation."""
    pending = [t for t in tasks if not t.done()]
    for _ in range(rounds):
        if not pending:
            return
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=within(1.0))
        pending = [t for t in pending if not t.done()]
        for task in pending:
            log.warning(
                "task %s still runs after a cancellation; cancelling again", task.get_name()
            )
    for task in pending:
        log.error("task %s does not stop", task.get_name())


class StreamManager:
    """All live streams of the runner, keyed by stream id (the orchestrator's)."""

    def __init__(self, settings: Settings, sessions: SessionTable, media: MediaPath) -> None:
        self.settings = settings
        self.sessions = sessions
        self.media = media
        self.controllers: dict[str, StreamController] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._start_locks: dict[str, asyncio.Lock] = {}
        self.channel_loss_listeners: list[Callable[[str], None]] = []
        """Called with a channel URL that vanished (404) or became unreachable."""

    def channels_lost(self, url: str) -> None:
        for listener in self.channel_loss_listeners:
            try:
                listener(url)
            except Exception:
                log.exception("channel loss listener failed for %s", url)

    def _start_lock(self, stream_id: str) -> asyncio.Lock:
        lock = self._start_locks.get(stream_id)
        if lock is None:
            lock = self._start_locks[stream_id] = asyncio.Lock()
        return lock

    def live(self) -> list[StreamController]:
        return list(self.controllers.values())

    async def start(
        self,
        spec: StreamSpec,
        *,
        wait_s: float | None = None,
        control_plane: str = "byoc",
        reserved: bool = False,
    ) -> StartOutcome:
        """Admit and start a stream; answers within ``stream_start_timeout_s`` (or ``wait_s``:
        0 answers once admitted, e.g. for a WHIP offer that must not wait for a warm-up).

        ``control_plane`` names who started it (shown in its status); ``reserved``: it takes
        the capacity slot its Live Runner reservation holds.

        Raises ``CapacityError`` when full (running streams untouched). A start for an id that
        is live replaces that stream: the old one is ended before the new one starts.
        """
        lock = self._start_lock(spec.stream_id)
        try:
            async with lock:
                setup, controller, session = await self._admit_and_start(
                    spec, control_plane, reserved
                )
        finally:
            if not lock.locked() and spec.stream_id not in self.controllers:
                self._start_locks.pop(spec.stream_id, None)
        timeout = self.settings.stream_start_timeout_s if wait_s is None else wait_s
        done, _ = await asyncio.wait({setup}, timeout=timeout) if timeout > 0 else (set(), None)
        if setup.cancelled():  # a newer start for the same id replaced it already
            return StartOutcome(session)
        if setup in done and setup.exception() is not None:
            exc = setup.exception()
            status = (
                400
                if isinstance(exc, ParamsRejected)
                else 503
                if isinstance(exc, MediaUnavailable)
                else 500
            )
            message = str(exc) or type(exc).__name__
            await controller.end(SessionState.FAILED, f"set-up failed: {message}", error=message)
            return StartOutcome(session, status, message)
        if setup not in done:
            log.info("stream %s: set-up continues in the background", spec.stream_id)
            setup.add_done_callback(lambda task: self._after_setup(controller, task))
        return StartOutcome(session)

    async def _admit_and_start(
        self, spec: StreamSpec, control_plane: str, reserved: bool
    ) -> tuple[asyncio.Task[None], StreamController, Session]:
        old = self.controllers.get(spec.stream_id)
        existing = self.sessions.get(spec.stream_id)
        replacing = old is not None or (existing is not None and existing.live)
        session = self.sessions.admit_stream(
            spec.capability,
            spec.stream_id,
            replacing=replacing,
            reserved=reserved and not replacing,
            control_plane=control_plane,
        )
        session.params = dict(spec.params)
        controller = StreamController(self, session, spec)
        if old is not None:
            # The old session left the table (replaced under the same id); end it everywhere
            # before the new one starts, so the media path never holds two under one id.
            self.controllers.pop(spec.stream_id, None)
            await old.end(SessionState.STOPPED, "replaced by a new start")
        self.controllers[spec.stream_id] = controller
        setup = controller.start()
        return setup, controller, session

    def resume(self, session: Session, spec: StreamSpec) -> None:
        """Start again a stream a previous run of the runner left live; ``session`` is already
        back in the table (``byoc.resume``). Set-up failures end it as ``failed``."""
        log.info("stream %s: resuming after a runner restart", spec.stream_id)
        controller = StreamController(self, session, spec)
        self.controllers[spec.stream_id] = controller
        setup = controller.start()
        setup.add_done_callback(lambda task: self._after_setup(controller, task))

    def _after_setup(self, controller: StreamController, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        message = str(task.exception()) or type(task.exception()).__name__
        controller._end_soon(SessionState.FAILED, f"set-up failed: {message}", error=message)

    async def stop(self, stream_id: str, reason: str) -> bool:
        """End a live stream; False when there is none with that id (not an error)."""
        controller = self.controllers.get(stream_id)
        if controller is None:
            session = self.sessions.get(stream_id)
            if session is not None and session.live:  # a live job: mark it ended
                session.transition(SessionState.STOPPED, error=None)
            return False
        await controller.end(SessionState.STOPPED, reason)
        return True

    async def update(self, stream_id: str, raw: Any) -> dict[str, Any]:
        controller = self.controllers.get(stream_id)
        if controller is None:
            raise StreamNotFound(stream_id)
        return await controller.update_params(raw, source="/stream/params")

    def get(self, stream_id: str) -> StreamController | None:
        return self.controllers.get(stream_id)

    # --- worker messages -------------------------------------------------------------------

    def on_stream_state(self, worker: str, message: StreamState) -> None:
        """A worker's part of a stream changed state."""
        controller = self.controllers.get(message.stream_id)
        if controller is not None:
            controller.on_stream_state(message)

    def on_stream_stats(self, worker: str, message: StreamStats) -> None:
        """A worker's figures for a stream."""
        controller = self.controllers.get(message.stream_id)
        if controller is not None:
            controller.on_stats(message)

    def on_worker_error(self, worker: str, message: WorkerError) -> None:
        """A worker's error; those about a stream become its ``last_error``."""
        controller = self.controllers.get(message.stream_id) if message.stream_id else None
        if controller is not None:
            controller.on_error(message)

    def on_worker_restart(self, worker: str, restarts: int) -> None:
        """Count a restart in the streams the restarted worker served."""
        for controller in self.live():
            if self.media.uses_worker(controller.id, worker):
                controller.on_worker_restart(worker)

    # --- housekeeping ----------------------------------------------------------------------

    async def sweep(self) -> list[str]:
        """End streams whose media path or own tasks are gone; drop expired sessions."""
        ended = []
        for controller in self.live():
            if controller.ended:
                continue
            if not self.media.alive(controller.id):
                ended.append(controller.id)
                await controller.end(
                    SessionState.FAILED, "media path gone", error="media path gone"
                )
            elif not controller.tasks_alive():
                ended.append(controller.id)
                await controller.end(
                    SessionState.FAILED, "stream tasks died", error="stream tasks died"
                )
        self.sessions.sweep()
        return ended

    async def close(self, reason: str = "runner shutting down") -> None:
        """End every stream (each closes its own trickle clients)."""
        await asyncio.gather(
            *(c.end(SessionState.STOPPED, reason) for c in self.live()), return_exceptions=True
        )
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    def _forget(self, controller: StreamController) -> None:
        if self.controllers.get(controller.id) is controller:
            del self.controllers[controller.id]
        lock = self._start_locks.get(controller.id)
        if lock is not None and not lock.locked() and controller.id not in self.controllers:
            del self._start_locks[controller.id]

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


__all__ = ["CapacityError", "StartOutcome", "StreamController", "StreamManager", "StreamNotFound"]
