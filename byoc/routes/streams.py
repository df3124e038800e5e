"""go-livepeer's stream contract: ``POST /stream/start``, ``/stream/params``, ``/stream/stop`` and
``GET /stream/status``.

The orchestrator sends ``X-Stream-Id`` on every call. Start bodies carry ``gateway_request_id``,
``control_url``, ``events_url`` and, when enabled, ``subscribe_url``, ``publish_url``,
``data_url``, plus ``params`` (an object or null); unknown keys are ignored. Params bodies are
flat JSON objects. Stop bodies are JSON, plain text or empty, usually without a Content-Type,
and stopping an unknown or ended stream is not an error.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from byoc.capabilities import COMFYSTREAM_VIDEO
from byoc.errors import ApiError, json_error
from byoc.media_path import ParamsRejected, StreamSpec
from byoc.routes.job_context import parse_json_object
from byoc.runtime import RUNTIME_KEY
from byoc.sessions import CapacityError
from byoc.stream_params import check_params
from byoc.streams import StreamNotFound
from ipc.echo import clip_text, summarize_large_values
from ipc.untrusted_json import UntrustedJsonError, loads_untrusted

log = logging.getLogger(__name__)

STREAM_ID_HEADER = "X-Stream-Id"
MAX_STREAM_ID_CHARS = 256
URL_KEYS_REQUIRED = ("control_url", "events_url")
URL_KEYS_OPTIONAL = ("subscribe_url", "publish_url", "data_url")


def _check_stream_id(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ApiError(
            400, f"a stream id is required ({STREAM_ID_HEADER} header or gateway_request_id)"
        )
    if (
        len(value) > MAX_STREAM_ID_CHARS
        or not value.isprintable()
        or any(c.isspace() for c in value)
    ):
        raise ApiError(400, "stream id must be at most 256 printable characters without spaces")
    return value


def _check_url(data: dict[str, Any], key: str, *, required: bool) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            raise ApiError(400, f"{key} is required")
        return None
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ApiError(400, f"{key} must be an http:// or https:// URL")
    if len(value) > 2048 or not value.isprintable() or any(c.isspace() for c in value):
        raise ApiError(400, f"{key} is not a usable URL")
    return value


def _stream_id_from(request: web.Request, data: dict[str, Any] | None = None) -> str | None:
    value = request.headers.get(STREAM_ID_HEADER)
    if value:
        return value
    if data is not None:
        for key in ("gateway_request_id", "stream_id"):
            if isinstance(data.get(key), str) and data[key]:
                return str(data[key])
    return None


async def stream_start(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME_KEY]
    data = parse_json_object(await request.read())
    stream_id = _check_stream_id(_stream_id_from(request, data))
    urls = {key: _check_url(data, key, required=True) for key in URL_KEYS_REQUIRED}
    optional = {key: _check_url(data, key, required=False) for key in URL_KEYS_OPTIONAL}
    try:
        params = check_params(data.get("params"), max_side=runtime.settings.max_image_side)
    except ParamsRejected as exc:
        raise ApiError(400, str(exc)) from None
    spec = StreamSpec(
        stream_id=stream_id,
        capability=COMFYSTREAM_VIDEO,
        control_url=str(urls["control_url"]),
        events_url=str(urls["events_url"]),
        subscribe_url=optional["subscribe_url"],
        publish_url=optional["publish_url"],
        data_url=optional["data_url"],
        params=params,
    )
    try:
        outcome = await runtime.streams.start(spec)
    except CapacityError as exc:
        runtime.metrics.admission_refused("stream_capacity")
        raise ApiError(503, str(exc)) from None
    if outcome.error_status:
        if outcome.error_status == 503:
            runtime.metrics.admission_refused("worker_unavailable")
        return json_error(outcome.error_status, outcome.error)
    return web.json_response(
        {
            "status": "success",
            "message": "stream started",
            "stream_id": stream_id,
            "request_id": stream_id,
            "state": outcome.session.state.value,
        }
    )


async def stream_params(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME_KEY]
    stream_id = request.headers.get(STREAM_ID_HEADER)
    if not stream_id:
        raise ApiError(400, f"{STREAM_ID_HEADER} header is required")
    data = parse_json_object(await request.read())
    try:
        params = await runtime.streams.update(stream_id, data)
    except StreamNotFound:
        raise ApiError(404, f"stream {stream_id} is not running") from None
    except ParamsRejected as exc:
        raise ApiError(400, str(exc)) from None
    return web.json_response(
        {"status": "success", "stream_id": stream_id, "params": summarize_large_values(params)}
    )


async def stream_stop(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME_KEY]
    body = await request.read()
    data: dict[str, Any] | None = None
    reason = "stop requested"
    if body.strip():
        try:
            parsed = loads_untrusted(body, what="stop body", max_bytes=len(body))
        except UntrustedJsonError:
            reason = body[:200].decode("utf-8", "replace").strip() or reason
        else:
            data = parsed if isinstance(parsed, dict) else None
    stream_id = _stream_id_from(request, data)
    if not stream_id:
        return web.json_response(
            {"status": "success", "message": "no stream id given; nothing to stop"}
        )
    stopped = await runtime.streams.stop(stream_id, reason=f"/stream/stop: {reason}")
    message = "stream stopped" if stopped else "stream was not running"
    return web.json_response({"status": "success", "stream_id": stream_id, "message": message})


async def stream_status(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME_KEY]
    stream_id = request.headers.get(STREAM_ID_HEADER) or request.query.get("stream_id")
    if not stream_id:
        live = runtime.streams.live()
        return web.json_response(
            {
                "active_streams": len(live),
                "streams": {c.id: c.session.state.value for c in live},
            }
        )
    controller = runtime.streams.get(stream_id)
    if controller is not None:
        return web.json_response(controller.event()["event"])
    session = runtime.sessions.get(stream_id)
    if session is None:
        raise ApiError(404, f"stream {stream_id} not found")
    return web.json_response(
        {
            "stream_id": session.id,
            "state": session.state.value,
            "params": summarize_large_values(session.params),
            "last_error": None if session.error is None else clip_text(session.error),
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post("/stream/start", stream_start)
    app.router.add_post("/stream/params", stream_params)
    app.router.add_post("/stream/stop", stream_stop)
    app.router.add_get("/stream/status", stream_status)
