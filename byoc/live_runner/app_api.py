"""The Live Runner app API: what clients reach through the orchestrator's session proxy.

The orchestrator proxies ``{app_url}/{path}`` to ``{runner_url}/{path}``; our ``runner_url`` is
``{public url}/live-runner``, so every route here is one path segment below it and every URL we
answer is relative (``status``, ``whep/{viewer}``), resolving under the client's app URL.

Every request must carry the headers the proxy sets: ``Livepeer-Session-Id`` (a session in the
active set, else 404), ``Livepeer-Session-Token`` (pinned on first use and confirmed once with
the orchestrator by creating the session's channels, a token-checked callback; another token
later is 403, one the orchestrator refuses 401) and ``Livepeer-Session-Control`` (the session's
callback base, which must be on the orchestrator that reserved it).

Routes (under ``/live-runner``):

- ``POST start`` ``{"workflow"|"prompts", "width", "height", ...}``: start the session's live
  stream; its trickle channels (input, output, events, data) are created on the orchestrator and
  their client URLs answered. ``{"input": "whip"}`` takes the input from ``POST whip`` instead.
- ``POST update`` (params, live), ``POST stop`` (the stream; the session stays), ``GET status``.
- ``POST image``: the one-shot ``comfystream-image`` job.
- ``POST whip`` (SDP): the stream's WebRTC publisher; ``POST whep`` (SDP): a viewer, ``PATCH`` /
  ``DELETE whep/{viewer_id}``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from byoc import capabilities as caps
from byoc.errors import ApiError
from byoc.live_runner.control_plane import CONTROL_PLANE, LiveRunnerControlPlane
from byoc.live_runner.sessions import ActiveSession
from byoc.livepeer.live_runner import (
    HEADER_SESSION_CONTROL,
    HEADER_SESSION_ID,
    HEADER_SESSION_TOKEN,
    Channel,
    OrchestratorUnreachable,
    Rejected,
    create_channels,
)
from byoc.media_path import ParamsRejected, StreamSpec
from byoc.routes import jobs
from byoc.routes.job_context import JobContext, parse_json_object
from byoc.routes.sessions import FIGURES
from byoc.routes.webrtc_http import SDP, created, patch, read_body
from byoc.runtime import RUNTIME_KEY, Runtime
from byoc.sessions import CapacityError
from byoc.settings import LIVE_RUNNER_PREFIX
from byoc.stream_params import check_params
from byoc.streams import StreamNotFound
from byoc.webrtc import add_viewer, attach_whip
from ipc.echo import summarize_large_values

log = logging.getLogger(__name__)

LIVE_RUNNER_KEY: web.AppKey[LiveRunnerControlPlane] = web.AppKey(
    "live_runner", LiveRunnerControlPlane
)
STREAM_CHANNELS = {
    "input": "video/mp2t",
    "output": "video/mp2t",
    "events": "application/json",
    "data": "application/json",
}
_token_locks: dict[str, asyncio.Lock] = {}


def _control_plane(request: web.Request) -> LiveRunnerControlPlane:
    control_plane = request.app.get(LIVE_RUNNER_KEY)
    if control_plane is None:
        raise ApiError(404, "the Live Runner control plane is not enabled on this runner")
    return control_plane


def _check_control_url(
    control_plane: LiveRunnerControlPlane, held: ActiveSession, url: str
) -> None:
    """The callback base must be this session's, on the orchestrator that reserved it."""
    bases = {held.orchestrator}
    for orch in control_plane.heartbeats.orchestrators:
        if orch.url == held.orchestrator and orch.runner_facing_url:
            bases.add(orch.runner_facing_url)
    if not url.rstrip("/").endswith(f"/session/{held.id}") or not any(
        url.startswith(base.rstrip("/") + "/runner/") for base in bases
    ):
        raise ApiError(403, f"{HEADER_SESSION_CONTROL} is not this session's orchestrator callback")


async def _confirm(
    control_plane: LiveRunnerControlPlane, held: ActiveSession, token: str, control_url: str
) -> None:
    """Pin ``token`` by creating the session's channels with it (the orchestrator checks it)."""
    assert control_plane.http is not None
    settings = control_plane.settings
    try:
        channels = await create_channels(
            control_plane.http,
            control_url,
            token,
            STREAM_CHANNELS,
            verify_tls=settings.trickle_verify_tls,
        )
    except Rejected as exc:
        if exc.status == 401:
            raise ApiError(401, "the orchestrator refused this session token") from None
        if exc.status == 404:
            await control_plane.release(held.id, "unknown to its orchestrator")
            raise ApiError(404, "the orchestrator no longer knows this session") from None
        raise ApiError(502, f"channel creation failed: {exc}") from None
    except OrchestratorUnreachable as exc:
        raise ApiError(502, f"orchestrator unreachable: {exc}") from None
    held.token, held.token_confirmed = token, True
    held.control_url, held.channels = control_url, channels
    log.info("live runner session %s: token confirmed, channels created", held.id)


async def session_of(request: web.Request) -> ActiveSession:
    """The active session a proxied request belongs to (raises the 4xx otherwise)."""
    control_plane = _control_plane(request)
    session_id = request.headers.get(HEADER_SESSION_ID, "")
    token = request.headers.get(HEADER_SESSION_TOKEN, "")
    control_url = request.headers.get(HEADER_SESSION_CONTROL, "")
    if not session_id or not token or not control_url:
        raise ApiError(
            401,
            f"{HEADER_SESSION_ID}, {HEADER_SESSION_TOKEN} and {HEADER_SESSION_CONTROL} are "
            "required: call through the orchestrator's session proxy",
        )
    held = control_plane.active.get(session_id)
    if held is None:
        raise ApiError(404, f"no active Live Runner session {session_id}")
    if held.token and not held.token_matches(token):
        raise ApiError(403, "wrong session token")
    if not held.token_confirmed:
        _check_control_url(control_plane, held, control_url)
        lock = _token_locks.setdefault(held.id, asyncio.Lock())
        try:
            async with lock:
                if not held.token_confirmed:
                    await _confirm(control_plane, held, token, control_url)
        finally:
            if not lock.locked():
                _token_locks.pop(held.id, None)
        if not held.token_matches(token):  # a concurrent first request pinned another token
            raise ApiError(403, "wrong session token")
    if control_plane.active.get(session_id) is not held:
        raise ApiError(404, f"no active Live Runner session {session_id}")
    held.touch()
    return held


def _client_urls(channels: dict[str, Channel], names: tuple[str, ...]) -> dict[str, str]:
    return {name: channels[name].url for name in names}


async def start(request: web.Request) -> web.Response:
    held = await session_of(request)
    control_plane = _control_plane(request)
    runtime = request.app[RUNTIME_KEY]
    data = parse_json_object(await request.read())
    whip_input = data.pop("input", None) == "whip"
    try:
        params = check_params(data, max_side=runtime.settings.max_image_side)
    except ParamsRejected as exc:
        raise ApiError(400, str(exc)) from None
    if not held.slotted:
        if control_plane.capacity.free() > 0 and not runtime.drain.draining:
            held.slotted = True
        else:
            runtime.metrics.admission_refused("stream_capacity")
            await control_plane.release(held.id, "reserved while full", tell_orchestrator=True)
            raise ApiError(503, "runner at capacity: the session was reserved while it was full")
    ch = held.channels
    spec = StreamSpec(
        stream_id=held.id,
        capability=caps.COMFYSTREAM_VIDEO,
        control_url="",
        events_url=ch["events"].internal_url,
        subscribe_url=None if whip_input else ch["input"].internal_url,
        publish_url=ch["output"].internal_url,
        data_url=ch["data"].internal_url,
        params=params,
    )
    try:
        outcome = await runtime.streams.start(spec, control_plane=CONTROL_PLANE, reserved=True)
    except CapacityError as exc:
        runtime.metrics.admission_refused("stream_capacity")
        raise ApiError(503, str(exc)) from None
    if outcome.error_status:
        if outcome.error_status == 503:
            runtime.metrics.admission_refused("worker_unavailable")
        raise ApiError(outcome.error_status, outcome.error)
    names = ("output", "events", "data") if whip_input else tuple(STREAM_CHANNELS)
    body: dict[str, Any] = {
        "session_id": held.id,
        "status": outcome.session.state.value,
        "channels": _client_urls(ch, names),
        "params": summarize_large_values(params),
        "status_url": "status",
        "update_url": "update",
        "stop_url": "stop",
        "whep_url": "whep",
    }
    if whip_input:
        body["whip_url"] = "whip"
    return web.json_response(body)


async def update(request: web.Request) -> web.Response:
    held = await session_of(request)
    runtime = request.app[RUNTIME_KEY]
    data = parse_json_object(await request.read())
    try:
        params = await runtime.streams.update(held.id, data)
    except StreamNotFound:
        raise ApiError(404, "this session has no live stream: POST start first") from None
    except ParamsRejected as exc:
        raise ApiError(400, str(exc)) from None
    return web.json_response({"session_id": held.id, "params": summarize_large_values(params)})


async def stop(request: web.Request) -> web.Response:
    held = await session_of(request)
    runtime = request.app[RUNTIME_KEY]
    stopped = await runtime.streams.stop(held.id, reason="stopped by the Live Runner client")
    return web.json_response(
        {"session_id": held.id, "status": "stopped" if stopped else "not running"}
    )


async def status(request: web.Request) -> web.Response:
    held = await session_of(request)
    runtime = request.app[RUNTIME_KEY]
    session = runtime.sessions.get(held.id)
    body: dict[str, Any] = {
        "session_id": held.id,
        "control_plane": CONTROL_PLANE,
        "status": "reserved" if session is None else session.state.value,
        "channels": {name: channel.url for name, channel in held.channels.items()},
    }
    if session is not None:
        body["error"] = session.error
        body["params"] = summarize_large_values(session.params)
    controller = runtime.streams.get(held.id)
    if controller is not None and not controller.ended:
        event = controller.event()["event"]
        body["figures"] = {key: event[key] for key in FIGURES}
    return web.json_response(body)


async def image(request: web.Request) -> web.StreamResponse:
    await session_of(request)
    runtime = request.app[RUNTIME_KEY]
    ctx = JobContext(
        request,
        runtime,
        caps.COMFYSTREAM_IMAGE,
        await request.read(),
        runtime.settings.job_timeout_s,
    )
    return await jobs.comfystream_image(ctx)


async def whip(request: web.Request) -> web.Response:
    held = await session_of(request)
    runtime = request.app[RUNTIME_KEY]
    sdp = await read_body(request, SDP)
    setup = await attach_whip(runtime, held.id, sdp)
    return created(setup, "whip")


async def whep(request: web.Request) -> web.Response:
    held = await session_of(request)
    runtime = request.app[RUNTIME_KEY]
    sdp = await read_body(request, SDP)
    setup = await add_viewer(runtime, held.id, sdp)
    return created(setup, f"whep/{setup.resource.peer_id}")


def _peers(runtime: Runtime) -> Any:
    if runtime.peers is None:
        raise ApiError(404, "WebRTC is not available on this runner")
    return runtime.peers


async def whip_patch(request: web.Request) -> web.Response:
    held = await session_of(request)
    peers = _peers(request.app[RUNTIME_KEY])
    resource = peers.publisher(held.id)
    if resource is None:
        raise ApiError(404, "no live WHIP publisher in this session")
    return await patch(request, peers, resource)


async def whip_delete(request: web.Request) -> web.Response:
    held = await session_of(request)
    runtime = request.app[RUNTIME_KEY]
    await runtime.streams.stop(held.id, reason="WHIP publisher left")
    return web.json_response({"status": "completed"})


async def whep_resource(request: web.Request) -> web.Response:
    held = await session_of(request)
    peers = _peers(request.app[RUNTIME_KEY])
    resource = peers.peers.get(request.match_info["viewer_id"])
    if resource is None or resource.role != "whep" or resource.stream_id != held.id:
        raise ApiError(404, "no such WHEP viewer")
    if request.method == "PATCH":
        return await patch(request, peers, resource)
    answer = await peers.close(resource)
    if answer.status not in (200, 404):
        raise ApiError(answer.status, answer.error)
    return web.json_response({"status": "closed"})


def add_routes(app: web.Application, control_plane: LiveRunnerControlPlane | None) -> None:
    """The app API under ``/live-runner`` (404 everywhere when the control plane is off)."""
    if control_plane is not None:
        app[LIVE_RUNNER_KEY] = control_plane
    p = LIVE_RUNNER_PREFIX
    app.router.add_post(f"{p}/start", start)
    app.router.add_post(f"{p}/update", update)
    app.router.add_post(f"{p}/stop", stop)
    app.router.add_get(f"{p}/status", status)
    app.router.add_post(f"{p}/image", image)
    app.router.add_post(f"{p}/whip", whip)
    app.router.add_patch(f"{p}/whip", whip_patch)
    app.router.add_delete(f"{p}/whip", whip_delete)
    app.router.add_post(f"{p}/whep", whep)
    app.router.add_patch(f"{p}/whep/{{viewer_id}}", whep_resource)
    app.router.add_delete(f"{p}/whep/{{viewer_id}}", whep_resource)
