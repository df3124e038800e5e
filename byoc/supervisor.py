"""The supervisor: spawns the ingest, infer and egress workers and keeps them alive.

Each worker is a ``spawn``-started process with one duplex control channel (a socketpair). A
worker that exits, fails to report ready in time, or stops heartbeating (a hung event loop) is
killed and restarted with exponential backoff; repeated restarts mark it as crash-looping, which
``/health`` reports. The parent keeps serving throughout.

A role may have several workers (``--infer-workers``): each is its own slot, named by
``byoc.worker_names`` (``infer-0``, ``infer-1``), spawned with its index, watched and restarted on
its own, so one crashing never touches its siblings.

Messages from workers are dispatched by type, one handler per type (``route``). Requests to
workers and their replies go through ``requests`` (``byoc.worker_requests``), which the supervisor
fails at once when the asked worker's process ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import multiprocessing
import os
import signal
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any

from byoc.infer_placement import InferPlacement
from byoc.settings import Settings
from byoc.worker_names import worker_name
from byoc.worker_requests import WorkerRequests
from ipc.channel import ChannelClosed, ControlChannel
from ipc.child import WorkerSpec
from ipc.deadline import within
from ipc.messages import (
    Heartbeat,
    JobProgress,
    JobResult,
    Message,
    PeerAnswer,
    Ready,
    Shutdown,
    StreamReply,
    WorkerError,
    worker_role,
)

log = logging.getLogger(__name__)

WorkerEntry = Callable[[WorkerSpec], None]
MessageHandler = Callable[[str, Any], Awaitable[None] | None]
RestartHandler = Callable[[str, int], Awaitable[None] | None]

CRASH_LOOP_WINDOW_S = 60.0
CRASH_LOOP_RESTARTS = 3
STABLE_AFTER_S = 30.0


def default_workers() -> dict[str, WorkerEntry]:
    """The three worker entry points, imported lazily so the parent stays import-light."""
    from egress.worker import main as egress_main
    from infer.worker import main as infer_main
    from ingest.worker import main as ingest_main

    return {"ingest": ingest_main, "infer": infer_main, "egress": egress_main}


class WorkerState(str, enum.Enum):
    STARTING = "starting"
    READY = "ready"
    RESTARTING = "restarting"
    STOPPED = "stopped"


@dataclass
class WorkerHandle:
    """The parent's view of one worker slot (survives restarts of its process)."""

    name: str
    entry: WorkerEntry
    options: dict[str, Any] = field(default_factory=dict)
    role: str = ""
    """What the worker does (``name`` without its index); empty: the name is the role."""
    index: int = 0
    """Which worker of its role this is (0: the first)."""
    state: WorkerState = WorkerState.STARTING
    process: BaseProcess | None = None
    channel: ControlChannel | None = None
    restarts: int = 0
    restart_times: deque[float] = field(default_factory=lambda: deque(maxlen=16))
    last_heartbeat: float = 0.0
    started_at: float = 0.0
    last_exit: str = ""
    detail: dict[str, str] = field(default_factory=dict)
    ready_event: asyncio.Event = field(default_factory=asyncio.Event)
    reap_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def crash_looping(self, now: float) -> bool:
        recent = [t for t in self.restart_times if now - t <= CRASH_LOOP_WINDOW_S]
        return len(recent) >= CRASH_LOOP_RESTARTS

    def __post_init__(self) -> None:
        self.role = self.role or self.name

    def snapshot(self, now: float) -> dict[str, Any]:
        return {
            "role": self.role,
            "index": self.index,
            "state": self.state.value,
            "pid": self.pid,
            "restarts": self.restarts,
            "crash_loop": self.crash_looping(now),
            "last_exit": self.last_exit or None,
            **({"detail": self.detail} if self.detail else {}),
        }


class Supervisor:
    """Starts, watches, restarts and stops the worker processes."""

    def __init__(
        self,
        settings: Settings,
        workers: Mapping[str, WorkerEntry] | None = None,
        worker_options: Mapping[str, dict[str, Any]] | None = None,
        worker_counts: Mapping[str, int] | None = None,
    ) -> None:
        """``workers`` maps each role to its entry point; ``worker_counts`` says how many workers
        a role has (default 1); ``worker_options`` are keyed by role (every worker of it) or by
        worker name (that one worker, merged over its role's)."""
        self.settings = settings
        entries = dict(workers) if workers is not None else default_workers()
        counts = dict(worker_counts or {})
        for role in (*entries, *counts):
            worker_role(role)  # a worker is named by its role; a typo fails here
        options = worker_options or {}
        self.workers: dict[str, WorkerHandle] = {}
        for role, entry in entries.items():
            count = counts.get(role, 1)
            if count < 1:
                raise ValueError(f"{role}: at least one worker, got {count}")
            for index in range(count):
                name = worker_name(role, index, count)
                merged = {
                    **options.get(role, {}),
                    **(options.get(name, {}) if name != role else {}),
                }
                self.workers[name] = WorkerHandle(name, entry, merged, role=role, index=index)
        self._context = multiprocessing.get_context("spawn")
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._routes: dict[type, MessageHandler] = {}
        self._restart_handlers: list[RestartHandler] = []
        self.requests = WorkerRequests(self)
        self.placement = InferPlacement(self)
        self.route((StreamReply, PeerAnswer), self._stream_reply)
        self.route(JobProgress, self._job_message)
        self.route(JobResult, self._job_message)

    # --- public API ------------------------------------------------------------------------

    def route(self, message_types: type | Iterable[type], handler: MessageHandler) -> None:
        """Call ``handler(worker, message)`` for every message of these types a worker sends.

        Each type has one handler: routing a type twice is a programming error (``ValueError``).
        Messages of a type nobody routed are logged and dropped.
        """
        types = (message_types,) if isinstance(message_types, type) else tuple(message_types)
        for message_type in types:
            if message_type in self._routes:
                raise ValueError(f"{message_type.__name__} is already routed")
            self._routes[message_type] = handler

    def _stream_reply(self, worker: str, message: StreamReply | PeerAnswer) -> None:
        self.requests.deliver(message.request_id, message, final=True)

    def _job_message(self, worker: str, message: JobProgress | JobResult) -> None:
        self.requests.deliver(message.job_id, message, final=isinstance(message, JobResult))

    def on_restart(self, handler: RestartHandler) -> None:
        """Call ``handler(worker, restarts)`` each time a worker is ready again after a restart."""
        self._restart_handlers.append(handler)

    async def start(self) -> None:
        """Spawn every worker and watch it; returns at once (use ``wait_ready`` to wait)."""
        for handle in self.workers.values():
            self._tasks.append(
                asyncio.create_task(self._watch(handle), name=f"supervise-{handle.name}")
            )

    async def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until every worker has reported ready (at least once); False on timeout."""
        waits = [handle.ready_event.wait() for handle in self.workers.values()]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def send(self, worker: str, message: Message) -> None:
        """Send a message to a worker; raises ``ChannelClosed`` if it is not connected."""
        handle = self.workers[worker]
        if handle.channel is None or handle.state is not WorkerState.READY:
            raise ChannelClosed(f"worker {worker} is not ready ({handle.state.value})")
        await handle.channel.send(message)

    async def wait_worker_ready(self, worker: str, timeout: float) -> bool:
        """Wait until ``worker`` is ready (e.g. after a restart); False on timeout."""
        deadline = time.monotonic() + timeout
        while not self.is_ready(worker):
            if self._stopping or time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    def names(self, role: str) -> list[str]:
        """The names of every worker of ``role``, by index."""
        handles = [h for h in self.workers.values() if h.role == role]
        return [h.name for h in sorted(handles, key=lambda h: h.index)]

    def is_ready(self, worker: str) -> bool:
        return self.workers[worker].state is WorkerState.READY

    def status(self) -> str:
        """``starting`` until every worker was ready once, then ``healthy`` or ``degraded``."""
        now = time.monotonic()
        handles = self.workers.values()
        if any(h.state is WorkerState.STARTING and h.restarts == 0 for h in handles):
            return "starting"
        if all(h.state is WorkerState.READY and not h.crash_looping(now) for h in handles):
            return "healthy"
        return "degraded"

    def snapshot(self) -> dict[str, dict[str, Any]]:
        now = time.monotonic()
        return {name: handle.snapshot(now) for name, handle in self.workers.items()}

    async def stop(self) -> None:
        """Ask every worker to shut down, kill the ones that do not, and wait for all."""
        self._stopping = True
        for name in self.workers:
            self.requests.fail_worker(name, "the runner is stopping")
        # Under a shutdown's shared deadline, the workers get what is left of it (at least a
        # moment to exit before they are killed), and their own clean-up shares it too.
        budget = max(0.5, within(self.settings.shutdown_timeout_s))
        deadline = time.monotonic() + budget
        for handle in self.workers.values():
            if handle.channel is not None:
                with contextlib.suppress(ChannelClosed, OSError):
                    await handle.channel.send(
                        Shutdown(reason="runner stopping", timeout_s=max(0.1, budget - 0.3))
                    )
        for handle in self.workers.values():
            await self._reap(handle, max(0.1, deadline - time.monotonic()))
            handle.state = WorkerState.STOPPED
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    # --- internals -------------------------------------------------------------------------

    async def _watch(self, handle: WorkerHandle) -> None:
        backoff = self.settings.restart_backoff_initial_s
        while not self._stopping:
            exit_reason = await self._run_once(handle)
            self.requests.fail_worker(handle.name, f"the {handle.name} worker {exit_reason}")
            if self._stopping:
                break
            handle.last_exit = exit_reason
            handle.restarts += 1
            handle.restart_times.append(time.monotonic())
            handle.state = WorkerState.RESTARTING
            if time.monotonic() - handle.started_at > STABLE_AFTER_S:
                backoff = self.settings.restart_backoff_initial_s
            log.error(
                "worker %s %s; restart %d in %.1fs",
                handle.name,
                exit_reason,
                handle.restarts,
                backoff,
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.settings.restart_backoff_max_s)

    async def _run_once(self, handle: WorkerHandle) -> str:
        """Spawn the worker, serve its channel until it dies or hangs; return why it ended."""
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        spec = WorkerSpec(
            name=worker_role(handle.role),
            index=handle.index,
            label=handle.name,
            control=child_sock,
            heartbeat_interval_s=self.settings.heartbeat_interval_s,
            log_level=self.settings.log_level,
            log_format=self.settings.log_format,
            options=handle.options,
        )
        process = self._context.Process(
            target=handle.entry, args=(spec,), name=f"comfystream-byoc-{handle.name}", daemon=False
        )
        handle.state = WorkerState.STARTING
        handle.started_at = time.monotonic()
        try:
            # Started on the loop's own thread: Linux's parent-death signal, which the worker
            # asks for, fires when the *thread* that forked it exits.
            process.start()
        finally:
            child_sock.close()  # the child holds its own copy; ours would hide the child's exit
        handle.process = process
        channel = await ControlChannel.from_socket(parent_sock, peer=f"worker {handle.name}")
        handle.channel = channel
        log.info("worker %s started, pid %s", handle.name, process.pid)
        try:
            return await self._serve(handle, channel)
        finally:
            handle.channel = None
            await channel.close()
            await self._reap(handle, 1.0)

    async def _serve(self, handle: WorkerHandle, channel: ControlChannel) -> str:
        timeout = self.settings.worker_start_timeout_s
        while True:
            try:
                message = await asyncio.wait_for(channel.recv(), timeout)
            except asyncio.TimeoutError:
                self._kill(handle)  # a hung process may not react to anything gentler
                if handle.state is WorkerState.READY:
                    return f"stopped heartbeating for {timeout:.1f}s (hung)"
                return f"did not report ready within {timeout:.1f}s"
            except ChannelClosed:
                return await self._exit_description(handle)
            handle.last_heartbeat = time.monotonic()
            if isinstance(message, Heartbeat):
                continue
            if isinstance(message, Ready):
                timeout = self.settings.heartbeat_timeout_s
                await self._mark_ready(handle, message)
                continue
            if isinstance(message, WorkerError) and message.fatal:
                log.error("worker %s: fatal error: %s", handle.name, message.message)
                handle.last_exit = message.message
            await self._dispatch(handle.name, message)

    async def _mark_ready(self, handle: WorkerHandle, message: Ready) -> None:
        first = not handle.ready_event.is_set()
        handle.state = WorkerState.READY
        handle.detail = dict(message.detail)
        handle.ready_event.set()
        log.info(
            "worker %s ready (pid %d)%s",
            handle.name,
            message.pid,
            "" if first else " after restart",
        )
        if not first:
            for handler in self._restart_handlers:
                result = handler(handle.name, handle.restarts)
                if result is not None:
                    await result

    async def _dispatch(self, worker: str, message: Message) -> None:
        handler = self._routes.get(type(message))
        if handler is None:
            log.debug("worker %s: no handler for %s", worker, type(message).__name__)
            return
        try:
            result = handler(worker, message)
            if result is not None:
                await result
        except Exception:
            log.exception("handler failed for %s from worker %s", type(message).__name__, worker)

    async def _exit_description(self, handle: WorkerHandle) -> str:
        process = handle.process
        if process is None:
            return "exited"
        await asyncio.get_running_loop().run_in_executor(None, process.join, 1.0)
        code = process.exitcode
        if code is None:
            return "closed its control channel"
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"was killed by {signal.Signals(-code).name}"
        return f"exited with code {code}"

    async def _reap(self, handle: WorkerHandle, grace_s: float) -> None:
        """Make sure the worker process is gone: wait, then SIGTERM, then SIGKILL."""
        async with handle.reap_lock:  # stop() and the watcher may both reap the same process
            await self._reap_locked(handle, grace_s)

    async def _reap_locked(self, handle: WorkerHandle, grace_s: float) -> None:
        process = handle.process
        if process is None:
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, process.join, grace_s)
        if process.is_alive():
            log.warning("worker %s (pid %s) did not exit, terminating", handle.name, process.pid)
            process.terminate()
            await loop.run_in_executor(None, process.join, 2.0)
        if process.is_alive():
            self._kill(handle)
            await loop.run_in_executor(None, process.join, 2.0)
        if not process.is_alive():
            process.close()  # frees its sentinel fd; the handle forgets the process
            handle.process = None

    @staticmethod
    def _kill(handle: WorkerHandle) -> None:
        process = handle.process
        if process is not None and process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
