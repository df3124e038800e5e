"""``GET /health``: always 200, with the runner's state (``draining`` once a drain started, else
the workers' ``healthy``/``degraded``...), live sessions, workers and, when the runner registers
with orchestrators, where each registration stands."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from byoc.supervisor import Supervisor

SUPERVISOR_KEY = web.AppKey("supervisor", Supervisor)
ActiveStreamsCounter = Callable[[], int]
ACTIVE_STREAMS_KEY: web.AppKey[ActiveStreamsCounter] = web.AppKey("active_streams")
RegistrationSnapshot = Callable[[], dict[str, Any]]
REGISTRATION_KEY: web.AppKey[RegistrationSnapshot] = web.AppKey("registration")
DRAINING_KEY: web.AppKey[Callable[[], bool]] = web.AppKey("draining")
LIVE_RUNNER_KEY: web.AppKey[RegistrationSnapshot] = web.AppKey("live_runner_health")


async def health(request: web.Request) -> web.Response:
    supervisor = request.app[SUPERVISOR_KEY]
    count_active = request.app.get(ACTIVE_STREAMS_KEY)
    draining = request.app.get(DRAINING_KEY)
    body: dict[str, Any] = {
        "status": "draining" if draining is not None and draining() else supervisor.status(),
        "timestamp": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
        "active_streams": count_active() if count_active is not None else 0,
        "workers": supervisor.snapshot(),
    }
    registration = request.app.get(REGISTRATION_KEY)
    if registration is not None:
        orchestrators = registration()
        if orchestrators:
            body["orchestrators"] = orchestrators
    live_runner = request.app.get(LIVE_RUNNER_KEY)
    if live_runner is not None:
        snapshot = live_runner()
        if snapshot:
            body["live_runner"] = snapshot
    return web.json_response(body)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/health", health)
