"""The parent's aiohttp application: middlewares and routes, assembled in one place."""

from __future__ import annotations

from aiohttp import web

from byoc.errors import error_middleware
from byoc.routes import health
from byoc.settings import Settings
from byoc.supervisor import Supervisor

SETTINGS_KEY = web.AppKey("settings", Settings)


def create_app(settings: Settings, supervisor: Supervisor) -> web.Application:
    """Build the runner's HTTP application around a (started or not) supervisor."""
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[error_middleware()],
    )
    app[SETTINGS_KEY] = settings
    app["max_body_bytes"] = settings.max_body_bytes
    app[health.SUPERVISOR_KEY] = supervisor
    health.add_routes(app)
    return app
