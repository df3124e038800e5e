"""Runner-API session routes: ``GET /byoc/session/{id}/status`` (with a live stream's current
figures under ``figures``, its shared WHEP encoders' totals under ``figures.encoders``),
``DELETE /byoc/session/{id}``, ``POST /byoc/session/{id}/params`` and ``GET /byoc-stats``."""

from __future__ import annotations

from aiohttp import web

from byoc.errors import ApiError
from byoc.media_path import ParamsRejected
from byoc.routes.job_context import parse_json_object
from byoc.runtime import RUNTIME_KEY
from byoc.streams import StreamNotFound

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
        body["figures"]["encoders"] = controller.figures.encoders
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


async def session_params(request: web.Request) -> web.Response:
    """Live parameters of a session's stream (a ``/stream/params`` body), e.g. a WebRTC session's
    workflow: swapped between two frames."""
    runtime = request.app[RUNTIME_KEY]
    session_id = request.match_info["session_id"]
    data = parse_json_object(await request.read())
    try:
        params = await runtime.streams.update(session_id, data)
    except StreamNotFound:
        raise ApiError(404, "session not found or not live") from None
    except ParamsRejected as exc:
        raise ApiError(400, str(exc)) from None
    return web.json_response({"status": "success", "session_id": session_id, "params": params})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/byoc/session/{session_id}/params", session_params)
    app.router.add_get("/byoc/session/{session_id}/status", session_status)
    app.router.add_delete("/byoc/session/{session_id}", delete_session)
    app.router.add_get("/byoc-stats", stats)
