"""The ``whip-ingest`` and ``whep-subscribe`` capabilities (runner API and go-livepeer job
routes): WebRTC signalling in one JSON request, for clients that cannot speak WHIP/WHEP.

``whip-ingest``: ``{"sdp_offer": "<SDP>", "prompts" | "workflow", "width", "height",
"publish_url"?}`` or a raw ``application/sdp`` body (parameters from the query) creates a session
whose input is the offering peer. ``whep-subscribe``: ``{"sdp_offer": "<SDP>", "session_id":
"<id>"}`` adds a viewer of a live session. Both answer ``{"session_id", "status": "connected",
"result": {"sdp_answer", "session_id", "ice_servers", ...}}``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from byoc import capabilities as caps
from byoc.errors import ApiError
from byoc.ice_servers import as_json
from byoc.routes.job_context import JobContext, metadata_header, parse_json_object
from byoc.routes.video import _url
from byoc.webrtc import PeerSetup, add_viewer, start_whip_session, whip_params


def _sdp_offer(data: dict[str, Any]) -> str:
    sdp = data.get("sdp_offer")
    if isinstance(sdp, dict):  # {"type": "offer", "sdp": "..."} as browsers hold it
        sdp = sdp.get("sdp")
    if not isinstance(sdp, str) or not sdp.strip():
        raise ApiError(400, "'sdp_offer' is required and must be an SDP string")
    return sdp


def _answer(ctx: JobContext, setup: PeerSetup, extra: dict[str, Any]) -> web.Response:
    session = setup.session
    result = {
        "sdp_answer": setup.sdp_answer,
        "session_id": session.id,
        "ice_servers": as_json(setup.ice_servers),
        **extra,
    }
    ctx.runtime.sessions.set_result(session, result)
    return web.json_response(
        {"session_id": session.id, "status": "connected", "result": result},
        headers=metadata_header(session),
    )


async def whip_ingest(ctx: JobContext) -> web.StreamResponse:
    settings = ctx.runtime.settings
    if ctx.request.content_type == "application/sdp":
        sdp = ctx.body.decode("utf-8", errors="replace")
        data: dict[str, Any] = dict(ctx.request.query)
    else:
        data = parse_json_object(ctx.body)
        sdp = _sdp_offer(data)
    params = whip_params(data, settings.max_image_side)
    publish_url = _url(data, "publish_url", "output_stream_url")
    setup = await start_whip_session(
        ctx.runtime, sdp, params, capability=caps.WHIP_INGEST, publish_url=publish_url
    )
    session_id = setup.session.id
    return _answer(
        ctx,
        setup,
        {
            "whip_resource": f"/byoc/whip/{session_id}",
            "whep_endpoint": f"/byoc/whep/{session_id}",
            "params": params,
        },
    )


async def whep_subscribe(ctx: JobContext) -> web.StreamResponse:
    data = parse_json_object(ctx.body)
    sdp = _sdp_offer(data)
    session_id = data.get("session_id")
    if not isinstance(session_id, str) or not session_id:
        raise ApiError(400, "'session_id' is required: the session to watch")
    setup = await add_viewer(ctx.runtime, session_id, sdp)
    return _answer(
        ctx, setup, {"viewer_resource": f"/byoc/whep/{session_id}/{setup.resource.peer_id}"}
    )
