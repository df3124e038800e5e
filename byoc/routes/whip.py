"""WHIP ingest (RFC 9725): a WebRTC publisher as a session's input.

- ``POST /whip`` (``Content-Type: application/sdp``): a new session; its workflow and size come
  from the query (``?workflow=<JSON>&width=512&height=512``, or ``prompts``) or the defaults.
- ``POST /byoc/whip/{session_id}``: the publisher of a session ``comfystream-video`` created.
- ``PATCH /byoc/whip/{session_id}`` (``application/trickle-ice-sdpfrag``): late candidates (204);
  an ICE restart answers 422.
- ``DELETE /byoc/whip/{session_id}``: the publisher is done; the session completes (200).
- ``OPTIONS`` on both: CORS, exposing ``Location, ETag, Link``.
"""

from __future__ import annotations

from aiohttp import web

from byoc import capabilities as caps
from byoc.routes.webrtc_http import (
    cors_headers,
    created,
    find_peer,
    patch,
    read_offer,
    resource_options,
)
from byoc.runtime import RUNTIME_KEY
from byoc.webrtc import attach_whip, end_whip, start_whip_session, whip_params


def resource_url(session_id: str) -> str:
    return f"/byoc/whip/{session_id}"


async def post_new(request: web.Request) -> web.Response:
    runtime, sdp = await read_offer(request)
    params = whip_params(dict(request.query), runtime.settings.max_image_side)
    setup = await start_whip_session(runtime, sdp, params, capability=caps.WHIP_INGEST)
    return created(setup, resource_url(setup.session.id))


async def post_existing(request: web.Request) -> web.Response:
    runtime, sdp = await read_offer(request)
    setup = await attach_whip(runtime, request.match_info["session_id"], sdp)
    return created(setup, resource_url(setup.session.id))


async def patch_resource(request: web.Request) -> web.Response:
    peers, resource = find_peer(
        request.app[RUNTIME_KEY],
        lambda peers: peers.publisher(request.match_info["session_id"]),
        "no live WHIP publisher with this session id",
    )
    return await patch(request, peers, resource)


async def delete_resource(request: web.Request) -> web.Response:
    await end_whip(request.app[RUNTIME_KEY], request.match_info["session_id"])
    return web.json_response({"status": "completed"}, headers=cors_headers())


def add_routes(app: web.Application) -> None:
    app.router.add_post("/whip", post_new)
    app.router.add_options("/whip", resource_options)
    app.router.add_post("/byoc/whip/{session_id}", post_existing)
    app.router.add_patch("/byoc/whip/{session_id}", patch_resource)
    app.router.add_delete("/byoc/whip/{session_id}", delete_resource)
    app.router.add_options("/byoc/whip/{session_id}", resource_options)
