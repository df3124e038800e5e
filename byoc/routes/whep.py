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
from byoc.peers import PeerResource, PeerSignalling
from byoc.routes.webrtc_http import (
    cors_headers,
    created,
    find_peer,
    patch,
    read_offer,
    resource_options,
)
from byoc.runtime import RUNTIME_KEY
from byoc.webrtc import add_viewer


def _viewer(request: web.Request) -> tuple[PeerSignalling, PeerResource]:
    def find(peers: PeerSignalling) -> PeerResource | None:
        resource = peers.peers.get(request.match_info["viewer_id"])
        if resource is None or resource.role != "whep":
            return None
        return resource if resource.stream_id == request.match_info["session_id"] else None

    return find_peer(request.app[RUNTIME_KEY], find, "no such WHEP viewer")


async def post_viewer(request: web.Request) -> web.Response:
    runtime, sdp = await read_offer(request)
    session_id = request.match_info["session_id"]
    setup = await add_viewer(runtime, session_id, sdp)
    return created(setup, f"/byoc/whep/{session_id}/{setup.resource.peer_id}")


async def patch_viewer(request: web.Request) -> web.Response:
    peers, resource = _viewer(request)
    return await patch(request, peers, resource)


async def delete_viewer(request: web.Request) -> web.Response:
    peers, resource = _viewer(request)
    answer = await peers.close(resource)
    if answer.status not in (200, 404):  # 404: it had gone by itself meanwhile
        raise ApiError(answer.status, answer.error, cors_headers())
    return web.json_response({"status": "closed"}, headers=cors_headers())


def add_routes(app: web.Application) -> None:
    app.router.add_post("/byoc/whep/{session_id}", post_viewer)
    app.router.add_options("/byoc/whep/{session_id}", resource_options)
    app.router.add_patch("/byoc/whep/{session_id}/{viewer_id}", patch_viewer)
    app.router.add_delete("/byoc/whep/{session_id}/{viewer_id}", delete_viewer)
    app.router.add_options("/byoc/whep/{session_id}/{viewer_id}", resource_options)
