"""The local orchestrator stand-in: one aiohttp server with go-livepeer's BYOC endpoints, its Live
Runner endpoints and its trickle server at ``/ai/trickle/``, over HTTP or HTTPS with a generated
self-signed certificate.

It is what the tests, the benchmarks and ``make serve`` use in place of a go-livepeer node.
"""

from __future__ import annotations

import logging

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler

from byoc.livepeer.standin.orchestrator.gohttp import go_error
from byoc.livepeer.standin.orchestrator.jobs import JobProxy
from byoc.livepeer.standin.orchestrator.live_runner_routes import LiveRunnerRoutes
from byoc.livepeer.standin.orchestrator.live_runners import (
    DEFAULT_HEARTBEAT_INTERVAL_S,
    DEFAULT_HEARTBEAT_TTL_S,
    DEFAULT_O2R_KEEPALIVE_INTERVAL_S,
    LiveRunnerRegistry,
)
from byoc.livepeer.standin.orchestrator.registry import Registry
from byoc.livepeer.standin.orchestrator.streams import StreamRelay
from byoc.livepeer.standin.trickle_server import TrickleServer
from byoc.livepeer.tls import server_ssl_context
from byoc.livepeer.trickle.constants import DEFAULT_IDLE_TIMEOUT_S, DEFAULT_PREFIX

log = logging.getLogger(__name__)

DEFAULT_PORT = 8890
MAX_JOB_BODY_BYTES = 1024**3  # go-livepeer sets no limit on job bodies


@web.middleware
async def _go_not_found(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Go's mux answers unknown paths with ``404 page not found`` in plain text."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return go_error(404, "404 page not found")
    except web.HTTPMethodNotAllowed:
        return go_error(405, "Method not allowed")


class LocalOrchestrator:
    """A small, faithful go-livepeer orchestrator for BYOC workers and live runners (see the
    package docs). ``secret`` is the orchestrator secret of both (``-orchSecret``)."""

    def __init__(
        self,
        *,
        secret: str = "",
        keepalive_interval_s: float = 10.0,
        trickle_idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
        heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S,
        heartbeat_ttl_s: float = DEFAULT_HEARTBEAT_TTL_S,
        o2r_keepalive_interval_s: float = DEFAULT_O2R_KEEPALIVE_INTERVAL_S,
    ) -> None:
        self.registry = Registry(secret=secret)
        self.trickle = TrickleServer(prefix=DEFAULT_PREFIX, idle_timeout=trickle_idle_timeout_s)
        self.live_runners = LiveRunnerRegistry(
            self.trickle,
            secret=secret,
            heartbeat_interval_s=heartbeat_interval_s,
            heartbeat_ttl_s=heartbeat_ttl_s,
            o2r_keepalive_interval_s=o2r_keepalive_interval_s,
        )
        self.keepalive_interval_s = keepalive_interval_s
        self.url = ""  # e.g. http://127.0.0.1:8890, set by start()
        self._http: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.jobs: JobProxy | None = None
        self.streams: StreamRelay | None = None
        self.live_runner_routes: LiveRunnerRoutes | None = None

    @property
    def trickle_base(self) -> str:
        return f"{self.url}{DEFAULT_PREFIX}"

    def build_app(self) -> web.Application:
        """The orchestrator's routes (the HTTP client to workers must exist: see ``start``)."""
        assert self._http is not None
        self.jobs = JobProxy(self.registry, self._http)
        self.streams = StreamRelay(
            self.registry, self.trickle, self._http, keepalive_interval_s=self.keepalive_interval_s
        )
        app = web.Application(client_max_size=MAX_JOB_BODY_BYTES, middlewares=[_go_not_found])
        router = app.router
        router.add_route("*", "/capability/register", self.registry.handle_register)
        router.add_route("*", "/capability/unregister", self.registry.handle_unregister)
        router.add_route("*", "/process/request/{rest:.*}", self.jobs.handle)
        router.add_post("/ai/stream/start", self.streams.handle_start)
        router.add_post("/ai/stream/update", self.streams.handle_update)
        router.add_post("/ai/stream/stop", self.streams.handle_stop)
        self.live_runner_routes = LiveRunnerRoutes(self.live_runners, self._http)
        self.live_runner_routes.add_routes(app)
        self.trickle.add_routes(app)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0, *, tls: bool = False) -> str:
        """Serve on ``host:port`` (0 = any free port); return the base URL."""
        if self._runner is not None:
            raise RuntimeError("orchestrator already started")
        # Go's client: no connection limit, TLS verification off towards workers.
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ssl=False),
            timeout=aiohttp.ClientTimeout(total=None),
        )
        runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False)
        await runner.setup()
        try:
            ssl_context = server_ssl_context() if tls else None
            site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
            await site.start()
        except BaseException:
            await runner.cleanup()
            await self._http.close()
            self._http = None
            raise
        self._runner = runner
        bound_port = runner.addresses[0][1]
        shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
        shown = f"[{shown}]" if ":" in shown else shown
        self.url = f"{'https' if tls else 'http'}://{shown}:{bound_port}"
        assert self.streams is not None
        self.streams.trickle_base = self.trickle_base
        self.live_runners.base_url = self.url
        self.live_runners.start()
        log.info("local orchestrator listening on %s (trickle at %s)", self.url, self.trickle_base)
        return self.url

    async def close(self) -> None:
        """End every stream, close every channel, stop serving. Safe to call twice."""
        if self.live_runner_routes is not None:
            self.live_runner_routes.drop_proxied_connections()
        await self.live_runners.close()
        if self.streams is not None:
            await self.streams.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        if self._http is not None:
            await self._http.close()
            self._http = None
        log.info("local orchestrator stopped")

    async def restart(self) -> None:
        """What an orchestrator restart does, keeping the same address: every BYOC
        registration and stream, every live runner and session, every trickle channel
        forgotten, every proxied request cut. Nothing is announced to workers or runners; they
        find out on their next registration or heartbeat."""
        if self.live_runner_routes is not None:
            self.live_runner_routes.drop_proxied_connections()
        self.live_runners.forget_all()
        if self.streams is not None:
            await self.streams.close()
        self.registry.forget_all()
        for name in self.trickle.channel_names():
            self.trickle.close_channel(name)
        log.info("local orchestrator restarted (everything forgotten)")

    def release_session(self, runner_id: str, session_id: str) -> None:
        """Release a live runner session as the orchestrator does on a client stop or a failed
        payment: ``released`` on the runner's O2R channel, the session's channels closed."""
        self.live_runners.release_session(runner_id, session_id)

    async def __aenter__(self) -> LocalOrchestrator:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
