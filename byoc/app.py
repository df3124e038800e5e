"""The parent's aiohttp application: middlewares and routes, assembled in one place."""

from __future__ import annotations

from aiohttp import web

from byoc import drain
from byoc.auth import auth_middleware
from byoc.errors import MAX_BODY_BYTES_KEY, error_middleware
from byoc.live_runner import app_api as live_runner_api
from byoc.routes import health, jobs, metrics, page, sessions, streams, video, whep, whip
from byoc.runtime import RUNTIME_KEY, Runtime
from byoc.settings import Settings

SETTINGS_KEY = web.AppKey("settings", Settings)


def create_app(runtime: Runtime) -> web.Application:
    """Build the runner's HTTP application around the parent's shared state."""
    settings = runtime.settings

    def token_rejected() -> None:
        for callback in runtime.token_rejected:
            callback()

    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[
            error_middleware(),
            auth_middleware(settings.token, token_rejected),
            drain.drain_middleware(
                runtime.drain, lambda: runtime.metrics.admission_refused("draining")
            ),
        ],
    )
    app[SETTINGS_KEY] = settings
    app[RUNTIME_KEY] = runtime
    app[MAX_BODY_BYTES_KEY] = settings.max_body_bytes
    app[health.SUPERVISOR_KEY] = runtime.supervisor
    app[health.ACTIVE_STREAMS_KEY] = runtime.sessions.live_count
    app[health.DRAINING_KEY] = lambda: runtime.drain.draining
    app[health.REGISTRATION_KEY] = lambda: (
        runtime.registration.snapshot() if runtime.registration is not None else {}
    )
    app[health.LIVE_RUNNER_KEY] = lambda: (
        runtime.live_runner.snapshot() if runtime.live_runner is not None else {}
    )
    health.add_routes(app)
    live_runner_api.add_routes(app, runtime.live_runner)
    jobs.add_routes(app)
    streams.add_routes(app)
    sessions.add_routes(app)
    video.add_routes(app)
    whip.add_routes(app)
    whep.add_routes(app)
    drain.add_routes(app, runtime.drain, runtime.sessions.live_count)
    page.add_routes(app)
    if not settings.metrics_port:  # else /metrics is served on its own listener only
        metrics.add_routes(app, runtime.metrics)
    return app
