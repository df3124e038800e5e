"""Job routes: every capability at ``/{capability}`` (where go-livepeer's orchestrator forwards
``/process/request/{capability}``) and at ``/process/request/{capability}`` (clients calling the
runner directly, with an optional ``Livepeer`` header that is then checked).

Each job is recorded as a session (``processing`` -> ``completed``/``failed``) whose id comes
back in the ``X-Metadata`` response header, the one custom header go-livepeer relays to clients.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from byoc import capabilities as caps
from byoc.errors import ApiError, json_error
from byoc.livepeer.header import HEADER_NAME, HeaderError, decode_header
from byoc.routes import image_job, video, webrtc_jobs
from byoc.routes.job_context import JobContext, JobHandler, metadata_header, parse_json_object
from byoc.runtime import RUNTIME_KEY, Runtime
from byoc.sessions import CapacityError, SessionState
from byoc.settings import ALL_CAPABILITIES

log = logging.getLogger(__name__)


async def text_reversal(ctx: JobContext) -> web.StreamResponse:
    """``{"text": "..."}`` -> ``{"original": "...", "reversed": "..."}``."""
    data = parse_json_object(ctx.body)
    text = data.get("text")
    if not isinstance(text, str):
        raise ApiError(400, "'text' is required and must be a string")
    runtime = ctx.runtime
    _acquire_job_slot(runtime)
    try:
        session = runtime.sessions.add_job(ctx.capability)
        result = {"original": text, "reversed": text[::-1]}
        runtime.sessions.set_result(session, result)
        session.transition(SessionState.COMPLETED)
    finally:
        runtime.job_slots.release()
    return web.json_response(result, headers=metadata_header(session))


def _acquire_job_slot(runtime: Runtime) -> None:
    try:
        runtime.job_slots.acquire()
    except CapacityError as exc:
        runtime.metrics.admission_refused("job_capacity")
        raise ApiError(503, str(exc)) from None


async def not_implemented(ctx: JobContext) -> web.StreamResponse:
    raise ApiError(501, f"capability {ctx.capability} is not implemented yet")


async def comfystream_image(ctx: JobContext) -> web.StreamResponse:
    """Run in the infer worker (which checks the image and workflow; the parent the shape).

    The answer format follows ``Accept`` or, for clients behind go-livepeer (which does not
    forward ``Accept``), a body key ``"accept"`` with the same media types.
    """
    data = parse_json_object(ctx.body)
    accept = ctx.request.headers.get("Accept", "")
    if isinstance(data.get("accept"), str):
        accept = data["accept"]
    _acquire_job_slot(ctx.runtime)
    try:
        return await image_job.run(
            ctx.request, ctx.runtime, ctx.capability, ctx.body, ctx.timeout_s, accept=accept
        )
    finally:
        ctx.runtime.job_slots.release()


HANDLERS: dict[str, JobHandler] = {
    caps.TEXT_REVERSAL: text_reversal,
    caps.COMFYSTREAM_IMAGE: comfystream_image,
    caps.COMFYSTREAM_VIDEO: video.comfystream_video,
    caps.WHIP_INGEST: webrtc_jobs.whip_ingest,
    caps.WHEP_SUBSCRIBE: webrtc_jobs.whep_subscribe,
}


async def handle_job(request: web.Request) -> web.StreamResponse:
    """``/process/request/{capability}``: check the capability and the ``Livepeer`` header."""
    return await dispatch(request, request.match_info["capability"])


def capability_route(capability: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The handler of ``/{capability}`` (the path go-livepeer's orchestrator calls)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return await dispatch(request, capability)

    return handler


async def dispatch(request: web.Request, capability: str) -> web.StreamResponse:
    """Check the capability and the ``Livepeer`` header (when sent), then run the job."""
    runtime = request.app[RUNTIME_KEY]
    if capability not in ALL_CAPABILITIES:
        runtime.metrics.unknown_capability()
        raise ApiError(404, f"unknown capability {capability!r}")
    timeout_s = runtime.settings.job_timeout_s
    raw_header = request.headers.get(HEADER_NAME)
    if raw_header is not None:
        try:
            header = decode_header(raw_header)
        except HeaderError as exc:
            raise ApiError(400, str(exc)) from None
        if header.capability != capability:
            raise ApiError(
                400,
                f"Livepeer header capability {header.capability!r} does not match the route ({capability!r})",
            )
        timeout_s = min(timeout_s, float(header.timeout_seconds))
    body = await request.read()
    handler = HANDLERS.get(capability, not_implemented)
    return await handler(JobContext(request, runtime, capability, body, timeout_s))


async def empty_route(request: web.Request) -> web.Response:
    """``POST /``: the orchestrator calls the bare URL for ``/process/request/``; nothing is there."""
    return json_error(
        404, "no capability in the path: POST /{capability} or /process/request/{capability}"
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post("/", empty_route)
    app.router.add_post("/process/request/{capability}", handle_job)
    for name in ALL_CAPABILITIES:
        app.router.add_post(f"/{name}", capability_route(name))
