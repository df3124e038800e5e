"""WebRTC sessions in the parent: a WHIP publisher as a stream's input, WHEP viewers of a
stream's output, on the same session table and media path as trickle streams.

The HTTP routes (``byoc.routes.whip``, ``byoc.routes.whep``) and the ``whip-ingest`` /
``whep-subscribe`` capabilities call these; errors are ``ApiError``s in the runner's JSON format.

A WHIP ``POST`` never waits for the workflow's warm-up (OBS gives up after 8 s): the stream is
admitted, the ingest worker takes the offer, and the answer goes back while infer still warms up;
frames that arrive meanwhile wait in the input ring, where the newest win (drops counted).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from byoc import capabilities as caps
from byoc.errors import ApiError
from byoc.ice_servers import IceServers
from byoc.livepeer.webrtc.sdp import SdpError, advertise_public_ip, check_offer
from byoc.media_path import MediaUnavailable, ParamsRejected, StreamSpec
from byoc.peers import PeerResource, PeerSignalling
from byoc.runtime import Runtime
from byoc.sessions import CapacityError, Session, SessionState, new_session_id
from byoc.stream_params import check_params
from byoc.streams import StreamController
from byoc.worker_media_path import WorkerMediaPath
from byoc.worker_names import worker_role_index
from ipc.messages import IceServer, PeerRole

log = logging.getLogger(__name__)

RETRY_AFTER_FULL_S = 5
RETRY_AFTER_NOT_LIVE_S = 2
PARAM_KEYS = ("prompts", "workflow", "width", "height", "max_framerate")


@dataclass
class PeerSetup:
    """A peer that was answered: its session, SDP answer, resource and ICE servers."""

    session: Session
    sdp_answer: str
    resource: PeerResource
    ice_servers: list[IceServer]


def _parts(runtime: Runtime) -> tuple[WorkerMediaPath, PeerSignalling, IceServers]:
    media = runtime.streams.media
    if (
        not isinstance(media, WorkerMediaPath)
        or runtime.peers is None
        or runtime.ice_servers is None
    ):
        raise ApiError(503, "WebRTC needs the worker media path, which this runner does not run")
    return media, runtime.peers, runtime.ice_servers


def _check_offer(sdp: str, role: PeerRole) -> None:
    try:
        check_offer(sdp, role=role)
    except SdpError as exc:
        raise ApiError(exc.status, str(exc)) from None


def whip_params(raw: dict[str, Any], max_side: int) -> dict[str, Any]:
    """Stream parameters of a WHIP session from query parameters or a JSON body."""
    params: dict[str, Any] = {}
    for key in PARAM_KEYS:
        if key in raw and raw[key] not in (None, ""):
            value = raw[key]
            if key in ("width", "height") and isinstance(value, str):
                # ASCII digits only, and few of them: int() refuses "²" and 5,000-digit strings.
                if not (value.isascii() and value.isdigit() and len(value) <= 9):
                    raise ApiError(400, f"'{key}' must be an integer up to {max_side}")
                value = int(value)
            params[key] = value
    try:
        return check_params(params, max_side=max_side)
    except ParamsRejected as exc:
        raise ApiError(400, str(exc)) from None


def _raise_if_failed(session: Session) -> None:
    """A session that failed while its offer was being answered (infer refused the workflow
    first): its error, not the closed peer connection, is the client's news."""
    if not session.state.live and session.error:
        raise ApiError(400, f"the session failed: {session.error}")


def _forget_on_end(peers: PeerSignalling, session: Session) -> None:
    def listener(s: Session) -> None:
        if not s.state.live:
            peers.forget_stream(s.id)

    session.listeners.append(listener)


async def start_whip_session(
    runtime: Runtime,
    sdp: str,
    params: dict[str, Any],
    *,
    capability: str = caps.WHIP_INGEST,
    publish_url: str | None = None,
) -> PeerSetup:
    """A new session whose input is the WHIP publisher that sent ``sdp``."""
    media, peers, ice_servers = _parts(runtime)
    _check_offer(sdp, "whip")
    spec = StreamSpec(
        stream_id=new_session_id(),
        capability=capability,
        control_url="",
        events_url="",
        publish_url=publish_url,
        params=params,
        whip=True,
    )
    try:
        outcome = await runtime.streams.start(spec, wait_s=0)
    except CapacityError as exc:
        runtime.metrics.admission_refused("stream_capacity")
        raise ApiError(503, str(exc), {"Retry-After": str(RETRY_AFTER_FULL_S)}) from None
    if outcome.error_status:
        raise ApiError(outcome.error_status, outcome.error)
    session = outcome.session
    try:
        return await _publish(runtime, media, peers, ice_servers, session, sdp)
    except ApiError as exc:
        controller = runtime.streams.get(session.id)
        if controller is not None:
            reason = f"WHIP offer refused: {exc.message}"
            await controller.end(SessionState.FAILED, reason, error=exc.message)
        raise


async def attach_whip(runtime: Runtime, session_id: str, sdp: str) -> PeerSetup:
    """The WHIP publisher of an existing session (``comfystream-video``'s ``whip_endpoint``)."""
    media, peers, ice_servers = _parts(runtime)
    session, controller = _live_session(runtime, session_id)
    _check_offer(sdp, "whip")
    if peers.publisher(session_id) is not None:
        raise ApiError(409, "this session already has a WHIP publisher")
    if controller.spec.subscribe_url or controller.spec.source_path:
        raise ApiError(409, "this session already has an input")
    return await _publish(runtime, media, peers, ice_servers, session, sdp)


async def _publish(
    runtime: Runtime,
    media: WorkerMediaPath,
    peers: PeerSignalling,
    ice_servers: IceServers,
    session: Session,
    sdp: str,
) -> PeerSetup:
    servers = await ice_servers.current()
    try:
        await media.attach_whip(session.id, alive=lambda: session.state.live)
    except MediaUnavailable as exc:
        _raise_if_failed(session)
        runtime.metrics.admission_refused("worker_unavailable")
        raise ApiError(503, str(exc), {"Retry-After": str(RETRY_AFTER_FULL_S)}) from None
    answer, resource = await peers.offer(session.id, "whip", sdp, servers)
    if resource is None:
        _raise_if_failed(session)
        raise ApiError(answer.status if answer.status >= 400 else 500, answer.error)
    _forget_on_end(peers, session)
    if session.state in (SessionState.STARTING, SessionState.READY):
        session.transition(SessionState.CONNECTED)
    log.info("session %s: WHIP publisher %s connected", session.id, resource.peer_id)
    return PeerSetup(
        session,
        advertise_public_ip(answer.sdp, runtime.settings.webrtc_public_ip),
        resource,
        servers,
    )


def _live_session(runtime: Runtime, session_id: str) -> tuple[Session, StreamController]:
    """A live stream session, or 404 (never naming other sessions: ids are secrets)."""
    session = runtime.sessions.get(session_id)
    controller = runtime.streams.get(session_id)
    if session is None or controller is None or not session.state.live:
        raise ApiError(404, "session not found or not live")
    return session, controller


async def end_whip(runtime: Runtime, session_id: str) -> None:
    """A WHIP ``DELETE``: the publisher is done, the session completes."""
    peers = runtime.peers
    controller = runtime.streams.get(session_id)
    if peers is None or controller is None or peers.publisher(session_id) is None:
        raise ApiError(404, "no WHIP publisher with this session id")
    peers.forget_stream(session_id)
    await controller.end(SessionState.COMPLETED, "WHIP publisher sent DELETE")


async def add_viewer(runtime: Runtime, session_id: str, sdp: str) -> PeerSetup:
    """A WHEP viewer of a live session's output."""
    media, peers, ice_servers = _parts(runtime)
    session, _ = _live_session(runtime, session_id)
    _check_offer(sdp, "whep")
    try:
        attached = await media.attach_whep(session_id)
    except MediaUnavailable as exc:
        runtime.metrics.admission_refused("worker_unavailable")
        raise ApiError(503, str(exc), {"Retry-After": str(RETRY_AFTER_FULL_S)}) from None
    if not attached:
        raise ApiError(
            409,
            "the session is not live yet, try again shortly",
            {"Retry-After": str(RETRY_AFTER_NOT_LIVE_S)},
        )
    servers = await ice_servers.current()
    answer, resource = await peers.offer(session_id, "whep", sdp, servers)
    if resource is None:
        raise ApiError(answer.status if answer.status >= 400 else 500, answer.error)
    _forget_on_end(peers, session)
    log.info("session %s: WHEP viewer %s connected", session_id, resource.peer_id)
    return PeerSetup(
        session,
        advertise_public_ip(answer.sdp, runtime.settings.webrtc_public_ip),
        resource,
        servers,
    )


def end_peers_on_worker_restart(runtime: Runtime) -> None:
    """A restarted worker lost its peer connections (they cannot be resumed like a trickle
    subscription): WHIP sessions on ingest fail at once (the publisher must connect again), WHEP
    viewers on egress are forgotten (a player reconnects with a new ``POST``)."""
    peers = runtime.peers
    if peers is None:
        return

    async def on_restart(worker: str, restarts: int) -> None:
        role = {"ingest": "whip", "egress": "whep"}.get(worker_role_index(worker)[0])
        lost = [p for p in list(peers.peers.values()) if p.role == role]
        for resource in lost:
            peers.peers.pop(resource.peer_id, None)
            if role != "whip":
                continue
            controller = runtime.streams.get(resource.stream_id)
            if controller is not None:
                error = "WHIP publisher lost: the ingest worker restarted"
                await controller.end(SessionState.FAILED, error, error=error)
        if lost:
            log.warning("%d WebRTC peer(s) lost with the %s worker's restart", len(lost), worker)

    runtime.supervisor.on_restart(on_restart)
