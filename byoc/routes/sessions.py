"""Runner-API session routes: ``GET /byoc/session/{id}/status`` (with a live stream's current
figures under ``figures``), ``DELETE /byoc/session/{id}`` and ``GET /byoc-stats``."""

from __future__ import annotations

from aiohttp import web

from byoc.errors import ApiError
from byoc.runtime import RUNTIME_KEY

FIGURES = ("fps_in", "fps_out", "frames_dropped", "latency_ms", "stages", "dropped")
"""A live stream's figures in its status (as its status events carry them)."""


async def session_status(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME_KEY]
    session = runtime.sessions.get(request.match_info["session_id"])
    if session is None:
        raise ApiError(404, "session not found")
    body = session.status()
    controller = runtime.streams.get(session.id)
    if controller is not None and controller.session is session and not controller.ended:
        event = controller.event()["event"]
        body["figures"] = {key: event[key] for key in FIGURES}
    return web.json_response(body)


async def delete_session(request: web.Request) -> web.Response:
    """End the session if it is live (a stream is stopped everywhere), then forget it."""
    runtime = request.app[RUNTIME_KEY]
    session_id = request.match_info["session_id"]
    session = runtime.sessions.get(session_id)
    if session is None:
        raise ApiError(404, "session not found")
    await runtime.streams.stop(session_id, reason="deleted by client")
    runtime.sessions.remove(session_id)
    runtime.clips.remove(session_id)
    return web.json_response({"success": True, "message": "Session cleaned up"})


async def stats(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME_KEY]
    return web.json_response({session.id: session.stats() for session in runtime.sessions})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/byoc/session/{session_id}/status", session_status)
    app.router.add_delete("/byoc/session/{session_id}", delete_session)
    app.router.add_get("/byoc-stats", stats)
