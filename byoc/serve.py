"""``comfystream-byoc serve``: the parent process — HTTP API, supervisor, sessions, streams,
registration — started in order and stopped cleanly on SIGINT/SIGTERM.

With ``--with-orchestrator`` the local orchestrator stand-in runs in the same event loop on
``--orchestrator-port``, and the runner registers with it (unless ``--orch-url`` names others).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Mapping

from aiohttp import web

from byoc import capabilities as caps
from byoc.app import create_app
from byoc.jobs import WorkerJobs
from byoc.livepeer.registration import Capability
from byoc.media import MediaFactory, MediaPipeline, NoMediaPipeline
from byoc.registration import RegistrationService, build_capabilities
from byoc.runtime import Runtime
from byoc.sessions import JobSlots, SessionTable
from byoc.settings import Settings
from byoc.slow_clients import GuardedAppRunner, SlowClientLimits
from byoc.streams import StreamManager
from byoc.supervisor import Supervisor, WorkerEntry
from ipc import shm
from ipc.deadline import shared_deadline, within

log = logging.getLogger(__name__)


class Runner:
    """The parent's parts: workers, HTTP API, session sweep and orchestrator registration."""

    def __init__(
        self,
        settings: Settings,
        *,
        workers: Mapping[str, WorkerEntry] | None = None,
        media: MediaPipeline | None = None,
        media_factory: MediaFactory | None = None,
    ) -> None:
        """``media`` or ``media_factory(supervisor, settings)`` is the streams' media path.
        By default the real worker processes run it (``WorkerMediaPipeline``); with a custom
        ``workers`` map and neither given, streams run their control plane only."""
        self.settings = settings
        self.supervisor = Supervisor(
            settings,
            workers=workers,
            worker_options={
                "infer": {
                    "engine": settings.engine,
                    "workspace": str(settings.workspace),
                    "max_image_side": settings.max_image_side,
                    "max_workflow_memory_mb": settings.max_workflow_memory_mb,
                },
            },
        )
        sessions = SessionTable(settings.capacity, settings.session_retention_s)
        if media is None and media_factory is None and workers is None:
            from byoc.pipeline import WorkerMediaPipeline

            media_factory = WorkerMediaPipeline
        if media is None and media_factory is not None:
            media = media_factory(self.supervisor, settings)
        self.media: MediaPipeline = media or NoMediaPipeline()
        streams = StreamManager(settings, sessions, self.media)
        self.supervisor.on_message(streams.on_worker_message)
        self.supervisor.on_restart(streams.on_worker_restart)
        self.runtime = Runtime(
            settings=settings,
            supervisor=self.supervisor,
            sessions=sessions,
            job_slots=JobSlots(settings.max_jobs),
            worker_jobs=WorkerJobs(self.supervisor),
            streams=streams,
        )
        self.registration: RegistrationService | None = None
        self.url = ""  # http://host:port once started
        self._app_runner: GuardedAppRunner | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen, start the workers, the sweep and the registration; returns when listening."""
        settings = self.settings
        # Rings left by a runner that was killed before it could unlink them.
        for name in shm.sweep(dead_only=True):
            log.warning("removed shared memory %s left by a dead runner", name)
        app_runner = GuardedAppRunner(
            create_app(self.runtime),
            limits=SlowClientLimits(
                header_timeout_s=settings.header_timeout_s,
                min_body_rate=settings.min_body_rate,
            ),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=settings.shutdown_timeout_s,
        )
        await app_runner.setup()
        try:
            site = web.TCPSite(app_runner, settings.host, settings.port)
            await site.start()
        except BaseException:
            await app_runner.cleanup()
            raise
        self._app_runner = app_runner
        port = app_runner.addresses[0][1]
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
        self.url = f"http://{host}:{port}"
        log.info("listening on http://%s:%d", settings.host, port)
        await self.supervisor.start()
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="session-sweep")
        public_url = settings.capability_url.rstrip("/") or self.url
        self.registration = RegistrationService(
            settings,
            build_capabilities(settings, public_url),
            self.runtime.busy,
            in_use=self._in_use,
        )
        self.runtime.streams.channel_loss_listeners.append(self.registration.channels_lost)
        self.runtime.token_rejected.append(self.registration.evicted)
        self.runtime.registration = self.registration
        self.registration.start()

    def _in_use(self, capability: Capability) -> int:
        """Streams (for a stream capability) or jobs in flight: capacity not free now."""
        if capability.name in caps.STREAM_CAPABILITIES:
            return self.runtime.sessions.live_count()
        return self.runtime.job_slots.in_flight

    async def stop(self) -> None:
        """Unregister, end every stream, stop serving, stop the workers.

        Every network wait on the way (unregistering, final events, trickle ``DELETE``s,
        handlers still running, workers exiting) shares one ``--shutdown-timeout`` deadline;
        local clean-up (rings, sessions) always runs.
        """
        timeout = self.settings.shutdown_timeout_s
        with shared_deadline(timeout):
            if self.registration is not None:
                try:
                    await asyncio.wait_for(self.registration.stop(), within(timeout))
                except asyncio.TimeoutError:
                    log.warning("unregistering took longer than the shutdown deadline")
            if self._sweeper is not None:
                self._sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._sweeper
            await self.runtime.streams.close()
            if self._app_runner is not None:
                self._app_runner.limit_shutdown(within(timeout))
                await self._app_runner.cleanup()
                self._app_runner = None
            await self.runtime.streams.close()  # a start that raced the shutdown
            try:
                await self.media.close()
            except Exception:
                log.exception("media pipeline close failed")
            await self.supervisor.stop()
            self.runtime.clips.close()

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.session_sweep_interval_s)
            try:
                await self.runtime.streams.sweep()
                self.runtime.clips.prune(session.id for session in self.runtime.sessions)
            except Exception:
                log.exception("session sweep failed")


async def serve(
    settings: Settings,
    ready: asyncio.Event | None = None,
    *,
    stop: asyncio.Event | None = None,
    workers: Mapping[str, WorkerEntry] | None = None,
    media: MediaPipeline | None = None,
    media_factory: MediaFactory | None = None,
    started: list[Runner] | None = None,
) -> None:
    """Run the runner until SIGINT, SIGTERM or ``stop``, then release everything.

    ``started`` (tests) receives the ``Runner`` once it listens, e.g. to read its URL.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    orchestrator = None
    runner: Runner | None = None
    try:
        if settings.with_orchestrator:
            from byoc.livepeer.orchestrator import LocalOrchestrator

            orchestrator = LocalOrchestrator(secret=settings.orch_secret)
            await orchestrator.start(settings.host, settings.orchestrator_port)
            if not settings.orch_urls:
                settings = settings.replace(orch_urls=(orchestrator.url,))
        runner = Runner(settings, workers=workers, media=media, media_factory=media_factory)
        await runner.start()
        if started is not None:
            started.append(runner)
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("shutting down")
    finally:
        if runner is not None:
            await runner.stop()
        if orchestrator is not None:
            await orchestrator.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    log.info("stopped")
