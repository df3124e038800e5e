"""The worker side of the supervisor contract: start, report ready, heartbeat, obey shutdown.

Each worker package (``ingest``, ``infer``, ``egress``) provides a ``WorkerService`` and calls
``run_worker`` from its spawned entry point. The runtime owns the process-level concerns: the
process title, the uvloop event loop, logging, signals, the control channel and heartbeats, so a
service only handles its own messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ipc import logs
from ipc.channel import ChannelClosed, ControlChannel
from ipc.deadline import shared_deadline
from ipc.messages import (
    Heartbeat,
    Message,
    Probe,
    ProbeResult,
    Ready,
    Shutdown,
    WorkerError,
    WorkerRole,
)

PROCESS_TITLE_PREFIX = "comfystream-byoc"
_PR_SET_PDEATHSIG = 1

log = logging.getLogger(__name__)


@dataclass
class WorkerSpec:
    """Everything a spawned worker needs; pickled by ``multiprocessing`` into the child."""

    name: WorkerRole
    control: socket.socket
    heartbeat_interval_s: float = 1.0
    log_level: str = "INFO"
    log_format: str = "text"
    options: dict[str, Any] = field(default_factory=dict)
    """Role-specific options, validated by the worker into its own typed options."""
    index: int = 0
    """Which worker of its role this is (0: the first)."""
    label: str = ""
    """The worker's name in the parent (``infer-1`` when its role has several workers), for
    its process title and log lines; empty: the role."""

    @property
    def display_name(self) -> str:
        return self.label or self.name


class WorkerContext:
    """What a service may use: the spec and a way to send messages to the parent."""

    def __init__(self, spec: WorkerSpec, channel: ControlChannel) -> None:
        self.spec = spec
        self.name: WorkerRole = spec.name
        self.index = spec.index
        self.shutdown_timeout_s = 0.0  # from the parent's Shutdown, when it sets one
        self._channel = channel

    async def send(self, message: Message) -> None:
        """Send a message to the parent; a broken channel is logged, not raised."""
        try:
            await self._channel.send(message)
        except ChannelClosed:
            log.warning(
                "%s: parent channel closed, message %s dropped", self.name, type(message).__name__
            )


class WorkerService(Protocol):
    """A worker's own logic, driven by the runtime."""

    async def start(self, ctx: WorkerContext) -> dict[str, str]:
        """Set up; return details for the ``Ready`` message (e.g. the engine in use)."""
        ...

    async def handle(self, message: Message) -> None:
        """Handle one message from the parent (never ``Shutdown``: the runtime handles it)."""
        ...

    async def stop(self) -> None:
        """Release everything; called once on shutdown, crash of the parent or a signal."""
        ...

    def active_streams(self) -> int:
        """Streams this worker serves now (reported in heartbeats)."""
        ...


ServiceFactory = Callable[[WorkerSpec], WorkerService]


def run_worker(spec: WorkerSpec, factory: ServiceFactory) -> None:
    """Run a worker process to completion; returns when the parent asks it to stop or is gone."""
    _set_process_title(f"{PROCESS_TITLE_PREFIX}: {spec.display_name}")
    _die_with_parent()
    logs.configure(spec.log_level, spec.log_format, spec.display_name)
    # Ctrl-C reaches the whole process group; the parent decides how workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    code = 0
    try:
        _run_event_loop(_serve(spec, factory))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    # Everything the worker opened was released above. Skipping interpreter teardown keeps a
    # stuck library thread (a codec, a blocking read) from holding the process past its stop.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


async def _serve(spec: WorkerSpec, factory: ServiceFactory) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    started = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    channel = await ControlChannel.from_socket(spec.control, peer="parent")
    ctx = WorkerContext(spec, channel)
    service = factory(spec)
    # The channel is read from the start, so a shutdown during a slow start (imports, model
    # loading) is obeyed at once instead of after it.
    receiver = asyncio.create_task(_receive(ctx, channel, service, stopping, started))
    heartbeats: asyncio.Task[None] | None = None
    try:
        starting = asyncio.create_task(service.start(ctx))
        stop_wait = asyncio.create_task(stopping.wait())
        await asyncio.wait({starting, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            log.info("%s: stopped while starting", spec.name)
            await asyncio.gather(starting, return_exceptions=True)
            return
        stop_wait.cancel()
        try:
            detail = starting.result()
        except Exception as exc:
            log.exception("%s: failed to start", spec.name)
            await ctx.send(
                WorkerError(
                    worker=spec.name,
                    message=f"start failed: {exc}",
                    fatal=True,
                    worker_index=spec.index,
                )
            )
            raise SystemExit(1) from exc
        await ctx.send(
            Ready(worker=spec.name, pid=os.getpid(), detail=detail, worker_index=spec.index)
        )
        started.set()
        heartbeats = asyncio.create_task(_heartbeat(ctx, service, spec.heartbeat_interval_s))
        await stopping.wait()
    finally:
        for task in (heartbeats, receiver):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in (heartbeats, receiver) if t), return_exceptions=True)
        deadline = (
            shared_deadline(ctx.shutdown_timeout_s)
            if ctx.shutdown_timeout_s > 0
            else contextlib.nullcontext()
        )
        with deadline, contextlib.suppress(Exception):
            await service.stop()
        await channel.close()
        log.info("%s: stopped", spec.name)


async def _receive(
    ctx: WorkerContext,
    channel: ControlChannel,
    service: WorkerService,
    stopping: asyncio.Event,
    started: asyncio.Event,
) -> None:
    try:
        while True:
            message = await channel.recv()
            if isinstance(message, Shutdown):
                log.info("%s: shutdown requested (%s)", ctx.name, message.reason or "no reason")
                ctx.shutdown_timeout_s = message.timeout_s
                break
            if isinstance(message, Probe):
                await ctx.send(_probe(ctx, message))
                continue
            await started.wait()
            try:
                await service.handle(message)
            except Exception as exc:
                log.exception("%s: error handling %s", ctx.name, type(message).__name__)
                stream_id = getattr(message, "stream_id", "")
                await ctx.send(
                    WorkerError(
                        worker=ctx.name,
                        message=str(exc),
                        stream_id=stream_id,
                        worker_index=ctx.index,
                    )
                )
    except ChannelClosed:
        log.warning("%s: parent is gone, stopping", ctx.name)
    finally:
        stopping.set()


def _probe(ctx: WorkerContext, probe: Probe) -> ProbeResult:
    data = sorted(sys.modules) if probe.what == "modules" else []
    return ProbeResult(worker=ctx.name, what=probe.what, data=data, worker_index=ctx.index)


async def _heartbeat(ctx: WorkerContext, service: WorkerService, interval_s: float) -> None:
    seq = 0
    while True:
        seq += 1
        await ctx.send(
            Heartbeat(
                worker=ctx.name,
                worker_index=ctx.index,
                seq=seq,
                monotonic_ns=time.monotonic_ns(),
                active_streams=service.active_streams(),
            )
        )
        await asyncio.sleep(interval_s)


def _run_event_loop(main: Any) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; keep working without it
        asyncio.run(main)
        return
    uvloop.run(main)


def _set_process_title(title: str) -> None:
    try:
        import setproctitle
    except ImportError:  # pragma: no cover
        return
    setproctitle.setproctitle(title)


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker if the parent dies, even when the worker is hung."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)
