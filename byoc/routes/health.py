"""``GET /health``: always 200, with the runner's state, live sessions and workers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

from aiohttp import web

from byoc.supervisor import Supervisor

SUPERVISOR_KEY = web.AppKey("supervisor", Supervisor)
ActiveStreamsCounter = Callable[[], int]
ACTIVE_STREAMS_KEY: web.AppKey[ActiveStreamsCounter] = web.AppKey("active_streams")


async def health(request: web.Request) -> web.Response:
    supervisor = request.app[SUPERVISOR_KEY]
    count_active = request.app.get(ACTIVE_STREAMS_KEY)
    return web.json_response(
        {
            "status": supervisor.status(),
            "timestamp": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
            "active_streams": count_active() if count_active is not None else 0,
            "workers": supervisor.snapshot(),
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/health", health)
