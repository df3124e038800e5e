"""WHEP playback (draft-ietf-wish-whep): viewers of a session's processed output.

- ``POST /byoc/whep/{session_id}`` (``application/sdp``): a new viewer; 201 with a ``sendonly``
  answer and ``Location: /byoc/whep/{session_id}/{viewer_id}``. A session without a media path
  yet answers 409 with ``Retry-After``; one whose workflow still warms up answers at once (frames
  follow once it is live). Any live session can be watched: one started by
  go-livepeer (``/stream/start``), by ``comfystream-video`` or by a WHIP publisher. With
  ``--token`` set the viewer needs the Bearer token too (a paid stream is not public).
- ``PATCH`` / ``DELETE /byoc/whep/{session_id}/{viewer_id}``: late candidates; this viewer
  leaves (the session and its other viewers go on).
"""

from __future__ import annotations

from aiohttp import web

from byoc.errors import ApiError
from byoc.peers import PeerResource
from byoc.routes.webrtc_http import SDP, cors_headers, created, patch, preflight, read_body
from byoc.runtime import RUNTIME_KEY, Runtime
from byoc.webrtc import add_viewer


def _viewer(runtime: Runtime, request: web.Request) -> PeerResource:
    peers = runtime.peers
    resource = peers.peers.get(request.match_info["viewer_id"]) if peers is not None else None
    if (
        resource is None
        or resource.role != "whep"
        or resource.stream_id != request.match_info["session_id"]
    ):
        raise ApiError(404, "no such WHEP viewer", cors_headers())
    return resource


async def post_viewer(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME_KEY]
    sdp = await read_body(request, SDP)
    session_id = request.match_info["session_id"]
    setup = await add_viewer(runtime, session_id, sdp)
    return created(setup, f"/byoc/whep/{session_id}/{setup.resource.peer_id}")


async def patch_viewer(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME_KEY]
    resource = _viewer(runtime, request)
    assert runtime.peers is not None
    return await patch(request, runtime.peers, resource)


async def delete_viewer(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME_KEY]
    resource = _viewer(runtime, request)
    assert runtime.peers is not None
    answer = await runtime.peers.close(resource)
    if answer.status not in (200, 404):  # 404: it had gone by itself meanwhile
        raise ApiError(answer.status, answer.error, cors_headers())
    return web.json_response({"status": "closed"}, headers=cors_headers())


async def options(request: web.Request) -> web.Response:
    return preflight("POST, PATCH, DELETE, OPTIONS")


def add_routes(app: web.Application) -> None:
    app.router.add_post("/byoc/whep/{session_id}", post_viewer)
    app.router.add_options("/byoc/whep/{session_id}", options)
    app.router.add_patch("/byoc/whep/{session_id}/{viewer_id}", patch_viewer)
    app.router.add_delete("/byoc/whep/{session_id}/{viewer_id}", delete_viewer)
    app.router.add_options("/byoc/whep/{session_id}/{viewer_id}", options)
