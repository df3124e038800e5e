"""``comfystream-byoc serve``: the parent process — HTTP API, supervisor, sessions, streams,
registration — started in order and stopped cleanly.

SIGINT stops at once (live streams are stopped cleanly). SIGTERM drains first (``byoc.drain``):
no new sessions, unregistered, live ones run until they end or ``--drain-timeout``; a second
SIGTERM or a SIGINT cuts the drain short. With a state directory the session table is kept
there (``byoc.state_store``) and live streams a killed runner left are resumed at start
(``byoc.resume``).

With ``--with-orchestrator`` the local orchestrator stand-in runs in the same event loop on
``--orchestrator-port``, and the runner registers with it (unless ``--orch-url`` names others).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import signal
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from byoc import capabilities as caps
from byoc.app import create_app
from byoc.clips import ClipStore
from byoc.devices import infer_worker_count, infer_worker_gpus, usable_cores, visible_gpus
from byoc.drain import Drain, wait_until_idle
from byoc.ice_servers import IceServers
from byoc.jobs import WorkerJobs
from byoc.live_runner.control_plane import LiveRunnerControlPlane
from byoc.livepeer.registration import Capability
from byoc.media_path import MediaFactory, MediaPath, NoMediaPath, StreamSpec
from byoc.peers import PeerSignalling
from byoc.registration import RegistrationService, build_capabilities
from byoc.resume import SessionRecorder, restore_sessions
from byoc.routes.metrics import metrics_app
from byoc.runtime import Runtime
from byoc.sessions import JobSlots, Session, SessionTable
from byoc.settings import Settings
from byoc.slow_clients import GuardedAppRunner, SlowClientLimits
from byoc.state_store import StateStore
from byoc.streams import StreamManager
from byoc.supervisor import Supervisor, WorkerEntry
from byoc.webrtc import end_peers_on_worker_restart
from byoc.worker_names import worker_name
from ipc import shm
from ipc.deadline import shared_deadline, within
from ipc.messages import StreamState, StreamStats, WorkerError

log = logging.getLogger(__name__)


def webrtc_worker_options(settings: Settings) -> dict[str, dict[str, Any]]:
    """ICE options of the workers that hold peer connections; the UDP port range is split
    between them (ingest the lower half, egress the upper)."""
    base: dict[str, Any] = {"host_addresses": list(settings.webrtc_host_addresses)}
    ranges: dict[str, Any] = {"ingest": None, "egress": None}
    if settings.webrtc_ports is not None:
        first, last = settings.webrtc_ports
        middle = first + (last - first + 1) // 2
        ranges = {"ingest": [first, middle - 1], "egress": [middle, last]}
    return {
        worker: {"webrtc": {**base, "port_range": ranges[worker]}}
        for worker in ("ingest", "egress")
    }


def infer_worker_plan(settings: Settings) -> tuple[int, dict[str, dict[str, Any]]]:
    """How many infer workers to start, and, when several share a GPU host, each one's GPU (by
    worker name; a single worker sees every GPU and uses the default one)."""
    gpus = visible_gpus()
    count = infer_worker_count(settings.infer_workers, gpus, usable_cores())
    options = {
        worker_name("infer", index, count): {"gpu": gpu}
        for index, gpu in enumerate(infer_worker_gpus(count, gpus))
        if gpu and count > 1
    }
    return count, options


class Runner:
    """The parent's parts: workers, HTTP API, session sweep and orchestrator registration."""

    def __init__(
        self,
        settings: Settings,
        *,
        workers: Mapping[str, WorkerEntry] | None = None,
        media: MediaPath | None = None,
        media_factory: MediaFactory | None = None,
    ) -> None:
        """``media`` or ``media_factory(supervisor, settings)`` is the streams' media path.
        By default the real worker processes run it (``WorkerMediaPath``); with a custom
        ``workers`` map and neither given, streams run their control plane only."""
        self.settings = settings
        infer_count, infer_gpus = infer_worker_plan(settings)
        self.supervisor = Supervisor(
            settings,
            workers=workers,
            worker_counts={"infer": infer_count} if workers is None or "infer" in workers else {},
            worker_options={
                **infer_gpus,
                "infer": {
                    "engine": settings.engine,
                    "workspace": str(settings.workspace),
                    "max_image_side": settings.max_image_side,
                    "max_workflow_memory_mb": settings.max_workflow_memory_mb,
                },
                **webrtc_worker_options(settings),
            },
        )
        sessions = SessionTable(settings.capacity, settings.session_retention_s)
        if media is None and media_factory is None and workers is None:
            from byoc.worker_media_path import WorkerMediaPath

            media_factory = WorkerMediaPath
        if media is None and media_factory is not None:
            media = media_factory(self.supervisor, settings)
        self.media: MediaPath = media or NoMediaPath()
        streams = StreamManager(settings, sessions, self.media)
        # Every message type a worker sends has one handler (replies go to supervisor.requests).
        self.supervisor.route(StreamState, streams.on_stream_state)
        self.supervisor.route(StreamStats, self._on_stream_stats)
        self.supervisor.route(WorkerError, streams.on_worker_error)
        self.supervisor.on_restart(streams.on_worker_restart)
        connect_workers = getattr(self.media, "connect_workers", None)
        if connect_workers is not None:
            connect_workers()
        ice_servers = IceServers(settings)
        state_dir = settings.state_dir
        self.state_store = StateStore(state_dir) if state_dir is not None else None
        self.drain = Drain(settings.drain_timeout_s)
        self.runtime = Runtime(
            settings=settings,
            supervisor=self.supervisor,
            sessions=sessions,
            job_slots=JobSlots(settings.max_jobs),
            worker_jobs=WorkerJobs(self.supervisor),
            streams=streams,
            peers=PeerSignalling(self.supervisor, ice_servers),
            ice_servers=ice_servers,
            clips=ClipStore(state_dir / "clips" if state_dir is not None else None),
            drain=self.drain,
        )
        self.live_runner: LiveRunnerControlPlane | None = None
        if settings.live_runner_enabled:
            self.live_runner = LiveRunnerControlPlane(
                settings,
                sessions,
                streams,
                draining=lambda: self.drain.draining,
                state_store=self.state_store,
            )
            self.runtime.live_runner = self.live_runner
        end_peers_on_worker_restart(self.runtime)
        self.runtime.metrics.watch(self.runtime)
        self.registration: RegistrationService | None = None
        self.url = ""  # http://host:port once started
        self.metrics_url = ""  # http://host:port/metrics once started
        self._app_runner: GuardedAppRunner | None = None
        self._metrics_runner: web.AppRunner | None = None
        self._sweeper: asyncio.Task[None] | None = None

    def _on_stream_stats(self, worker: str, message: StreamStats) -> None:
        """A worker's figures feed the stream's status events and the metrics."""
        self.runtime.streams.on_stream_stats(worker, message)
        self.runtime.metrics.on_stream_stats(worker, message)
        if self.live_runner is not None:
            self.live_runner.on_stream_stats(message)

    async def start(self) -> None:
        """Open the state, listen, start the workers, resume the streams a killed runner left,
        start the sweep and the registration; returns when listening.

        Raises ``StateDirBusy`` when another runner uses the state directory."""
        settings = self.settings
        restored = await self._open_state()
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
        self.url = settings.local_url_at(port)
        log.info("listening on http://%s:%d", settings.host, port)
        self.metrics_url = f"{self.url}/metrics"
        if settings.metrics_port:
            try:
                await self._start_metrics_listener()
            except BaseException:
                await app_runner.cleanup()
                self._app_runner = None
                raise
        await self.supervisor.start()
        for session, spec in restored:
            self.runtime.streams.resume(session, spec)
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="session-sweep")
        self.registration = RegistrationService(
            settings,
            build_capabilities(settings, settings.public_url_at(port))
            if settings.byoc_enabled
            else [],
            self.runtime.busy,
            in_use=self._in_use,
        )
        self.runtime.streams.channel_loss_listeners.append(self.registration.channels_lost)
        self.runtime.token_rejected.append(self.registration.evicted)
        self.runtime.registration = self.registration
        self.registration.start()
        if self.live_runner is not None:
            await self.live_runner.start(settings.live_runner_url_at(port))

    def _in_use(self, capability: Capability) -> int:
        """Streams (for a stream capability) or jobs in flight: capacity not free now."""
        if capability.name in caps.STREAM_CAPABILITIES:
            # Live Runner reservations without a stream yet hold slots too.
            return self.runtime.sessions.live_count() + self.runtime.sessions.held_outside()
        return self.runtime.job_slots.in_flight

    async def _open_state(self) -> list[tuple[Session, StreamSpec]]:
        """Read the state directory into the session table; the streams to resume."""
        store = self.state_store
        if store is None:
            return []
        loaded = await asyncio.to_thread(store.open)
        sessions = self.runtime.sessions
        sessions.observers.append(SessionRecorder(store))
        restored = restore_sessions(sessions, loaded.sessions)
        for session_id in restored.expired:
            store.delete_session(session_id)
        self.runtime.clips.prune(session.id for session in sessions)
        log.info(
            "state %s: %d ended session(s) kept, %d stream(s) to resume, %d interrupted",
            store.path,
            restored.ended,
            len(restored.resume),
            len(restored.interrupted),
        )
        return restored.resume

    async def drain_until_idle(self, abort: asyncio.Event) -> bool:
        """Drain: refuse new work, unregister everywhere at once, wait until no session is live,
        ``--drain-timeout`` passed or ``abort`` is set. True when it became idle."""
        self.drain.begin("shutdown")
        if self.registration is not None:
            await self.registration.stop()
        idle = await wait_until_idle(
            self.runtime.sessions.live_count, self.settings.drain_timeout_s, abort
        )
        live = self.runtime.sessions.live_count()
        if idle:
            log.info("drained: no live session left")
        else:
            log.info(
                "drain %s with %d live session(s)",
                "cut short" if abort.is_set() else "timed out",
                live,
            )
        return idle

    async def _start_metrics_listener(self) -> None:
        settings = self.settings
        metrics_runner = web.AppRunner(
            metrics_app(self.runtime.metrics), access_log=None, handle_signals=False
        )
        await metrics_runner.setup()
        metrics_host = settings.metrics_host or settings.host
        try:
            await web.TCPSite(metrics_runner, metrics_host, settings.metrics_port).start()
        except BaseException:
            await metrics_runner.cleanup()
            raise
        self._metrics_runner = metrics_runner
        port = metrics_runner.addresses[0][1]
        host = "127.0.0.1" if metrics_host in ("0.0.0.0", "::", "") else metrics_host
        self.metrics_url = f"http://{host}:{port}/metrics"
        log.info("metrics on http://%s:%d/metrics", metrics_host, port)

    async def stop(self) -> None:
        """Unregister, end every stream, stop serving, stop the workers, close the state.

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
            if self.live_runner is not None:
                try:
                    await asyncio.wait_for(self.live_runner.stop(), within(timeout))
                except asyncio.TimeoutError:
                    log.warning("Live Runner unregistering took longer than the shutdown deadline")
            if self._sweeper is not None:
                self._sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._sweeper
            await self.runtime.streams.close()
            if self._app_runner is not None:
                self._app_runner.limit_shutdown(within(timeout))
                await self._app_runner.cleanup()
                self._app_runner = None
            if self._metrics_runner is not None:
                await self._metrics_runner.cleanup()
                self._metrics_runner = None
            await self.runtime.streams.close()  # a start that raced the shutdown
            try:
                await self.media.close()
            except Exception:
                log.exception("media path close failed")
            await self.supervisor.stop()
            self.runtime.clips.close()
            if self.state_store is not None:
                await asyncio.to_thread(self.state_store.close)

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
    media: MediaPath | None = None,
    media_factory: MediaFactory | None = None,
    started: list[Runner] | None = None,
) -> None:
    """Run the runner until SIGINT, ``stop``, or the end of a drain (SIGTERM,
    ``POST /admin/drain``), then release everything.

    ``started`` (tests) receives the ``Runner`` once it listens, e.g. to read its URL.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    orchestrator = None
    runner: Runner | None = None

    def on_sigterm() -> None:
        if runner is None or not runner.drain.begin("SIGTERM"):
            log.info("second stop signal: stopping now")
            stop.set()

    def on_sigint() -> None:
        if runner is not None and runner.drain.draining:
            log.info("second stop signal: stopping now")
        stop.set()

    loop.add_signal_handler(signal.SIGINT, on_sigint)
    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        if settings.with_orchestrator:
            from byoc.livepeer.standin.orchestrator import LocalOrchestrator

            if not settings.orch_secret and not settings.live_runner_secret:
                # Live Runner registration needs a secret (go-livepeer refuses it without one).
                settings = dataclasses.replace(settings, orch_secret=secrets.token_hex(16))
            orchestrator = LocalOrchestrator(secret=settings.orch_secret)
            await orchestrator.start(settings.host, settings.orchestrator_port)
            if not settings.orch_urls and "byoc" in settings.control_planes:
                settings = settings.replace(orch_urls=(orchestrator.url,))
            if not settings.live_runner_orch_urls and "live-runner" in settings.control_planes:
                settings = settings.replace(live_runner_orch_urls=(orchestrator.url,))
        runner = Runner(settings, workers=workers, media=media, media_factory=media_factory)
        await runner.start()
        if started is not None:
            started.append(runner)
        if ready is not None:
            ready.set()
        await _first_of(stop, runner.drain.requested)
        if not stop.is_set():
            await runner.drain_until_idle(stop)
        log.info("shutting down")
    finally:
        if runner is not None:
            await runner.stop()
        if orchestrator is not None:
            await orchestrator.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    log.info("stopped")


async def _first_of(*events: asyncio.Event) -> None:
    waits = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
