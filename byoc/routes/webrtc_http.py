"""HTTP details shared by the WHIP and WHEP routes: SDP offers, CORS, the 201 answer, finding
the peer a resource URL names, PATCH."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from byoc.errors import ApiError
from byoc.ice_servers import link_headers
from byoc.livepeer.webrtc.sdp import SdpError, parse_fragment
from byoc.peers import PeerResource, PeerSignalling
from byoc.runtime import RUNTIME_KEY, Runtime
from byoc.webrtc import PeerSetup

SDP = "application/sdp"
SDPFRAG = "application/trickle-ice-sdpfrag"
MAX_SDP_BYTES = 64 * 1024
EXPOSED = "Location, ETag, Link, Accept-Patch, Retry-After"


def cors_headers() -> dict[str, str]:
    return {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": EXPOSED}


async def read_body(request: web.Request, content_type: str) -> str:
    """The body as text, or 415 for another content type (400 when it is not UTF-8)."""
    if request.content_type != content_type:
        raise ApiError(415, f"Content-Type must be {content_type}", cors_headers())
    body = await request.content.read(MAX_SDP_BYTES + 1)
    if len(body) > MAX_SDP_BYTES:
        raise ApiError(413, f"the body is larger than {MAX_SDP_BYTES} bytes", cors_headers())
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "the body is not UTF-8 text", cors_headers()) from None


async def read_offer(request: web.Request) -> tuple[Runtime, str]:
    """The runtime and the SDP offer a POST carries (415/413/400 as ``read_body``)."""
    return request.app[RUNTIME_KEY], await read_body(request, SDP)


def find_peer(
    runtime: Runtime, find: Callable[[PeerSignalling], PeerResource | None], missing: str
) -> tuple[PeerSignalling, PeerResource]:
    """The peer signalling and the resource ``find`` picks, or 404 with ``missing``."""
    peers = runtime.peers
    resource = find(peers) if peers is not None else None
    if peers is None or resource is None:
        raise ApiError(404, missing, cors_headers())
    return peers, resource


def created(setup: PeerSetup, location: str) -> web.Response:
    """``201 Created`` with the SDP answer, the resource's ``Location`` (relative) and ETag, and
    one ``Link`` per ICE server."""
    response = web.Response(
        status=201, text=setup.sdp_answer, content_type=SDP, headers=cors_headers()
    )
    response.headers["Location"] = location
    response.headers["ETag"] = setup.resource.etag
    response.headers["Accept-Patch"] = SDPFRAG
    for link in link_headers(setup.ice_servers):
        response.headers.add("Link", link)
    return response


async def resource_options(request: web.Request) -> web.Response:
    """``OPTIONS`` on a WHIP or WHEP URL."""
    return preflight("POST, PATCH, DELETE, OPTIONS")


def preflight(methods: str) -> web.Response:
    """The answer to a CORS preflight (``OPTIONS``), open to any origin: access is checked by
    the Bearer token on the request itself."""
    return web.Response(
        status=204,
        headers={
            **cors_headers(),
            "Access-Control-Allow-Methods": methods,
            "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
            "Access-Control-Max-Age": "86400",
            "Accept-Post": SDP,
            "Accept-Patch": SDPFRAG,
        },
    )


async def patch(
    request: web.Request, peers: PeerSignalling, resource: PeerResource
) -> web.Response:
    """Trickled candidates (204); an ICE restart (new credentials) is not supported (422)."""
    if_match = request.headers.get("If-Match")
    if if_match is not None and if_match not in ("*", resource.etag):
        raise ApiError(412, "If-Match does not name this ICE session", cors_headers())
    text = await read_body(request, SDPFRAG)
    try:
        fragment = parse_fragment(text)
    except SdpError as exc:
        raise ApiError(exc.status, str(exc), cors_headers()) from None
    if (fragment.ufrag and fragment.ufrag != resource.ufrag) or if_match == "*":
        raise ApiError(422, "ICE restarts are not supported: start a new session", cors_headers())
    answer = await peers.candidates(resource, text)
    if answer.status != 204:
        raise ApiError(answer.status, answer.error, cors_headers())
    return web.Response(status=204, headers=cors_headers())
