"""WebRTC signalling in the parent: offers, late candidates and closes, relayed to the worker
that holds the peer connection (ingest for a WHIP publisher, egress for WHEP viewers), and the
HTTP resources they are known by.

The parent never builds a peer connection. It checks an offer's shape (``check_offer``), asks the
worker with a typed message and waits for its ``PeerAnswer`` under ``answer_timeout_s``. Each
resource has a strong ETag naming its ICE session (RFC 9725: a PATCH that restarts ICE with new
credentials is refused with 422).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field

from byoc.ice_servers import IceServers
from byoc.livepeer.webrtc.sdp import ice_credentials
from byoc.supervisor import Supervisor
from byoc.worker_requests import ReplyTimeout, WorkerUnavailable
from ipc.messages import (
    IceServer,
    PeerAnswer,
    PeerCandidates,
    PeerClose,
    PeerGone,
    PeerOffer,
    PeerRole,
)

log = logging.getLogger(__name__)

ROLE_WORKER: dict[str, str] = {"whip": "ingest", "whep": "egress"}


@dataclass
class PeerResource:
    """A WHIP publisher or a WHEP viewer, as the HTTP API knows it."""

    stream_id: str
    peer_id: str
    role: PeerRole
    etag: str
    ufrag: str
    ice_servers: list[IceServer] = field(default_factory=list)


class PeerSignalling:
    """Offers to workers and their answers, and the peer resources (see the module docstring)."""

    def __init__(
        self, supervisor: Supervisor, ice_servers: IceServers, *, answer_timeout_s: float = 20.0
    ) -> None:
        self.supervisor = supervisor
        self.ice_servers = ice_servers
        self.answer_timeout_s = answer_timeout_s
        self.peers: dict[str, PeerResource] = {}
        supervisor.route(PeerGone, self.on_peer_gone)

    def publisher(self, stream_id: str) -> PeerResource | None:
        """The WHIP publisher of a stream, if it has one."""
        return next(
            (p for p in self.peers.values() if p.stream_id == stream_id and p.role == "whip"),
            None,
        )

    def viewers(self, stream_id: str) -> list[PeerResource]:
        return [p for p in self.peers.values() if p.stream_id == stream_id and p.role == "whep"]

    async def offer(
        self, stream_id: str, role: PeerRole, sdp: str, servers: list[IceServer]
    ) -> tuple[PeerAnswer, PeerResource | None]:
        """Send an offer to the worker; returns its answer and, on 201, the new resource."""
        peer_id = secrets.token_urlsafe(16)
        request_id = secrets.token_hex(8)
        answer = await self._ask(
            ROLE_WORKER[role],
            PeerOffer(
                stream_id=stream_id,
                peer_id=peer_id,
                request_id=request_id,
                role=role,
                sdp=sdp,
                ice_servers=servers,
            ),
        )
        if answer.status != 201:
            return answer, None
        resource = PeerResource(
            stream_id=stream_id,
            peer_id=peer_id,
            role=role,
            etag=f'"{secrets.token_hex(12)}"',
            ufrag=ice_credentials(sdp)[0],
            ice_servers=servers,
        )
        self.peers[peer_id] = resource
        return answer, resource

    async def candidates(self, resource: PeerResource, sdpfrag: str) -> PeerAnswer:
        return await self._ask(
            ROLE_WORKER[resource.role],
            PeerCandidates(
                stream_id=resource.stream_id,
                peer_id=resource.peer_id,
                request_id=secrets.token_hex(8),
                sdpfrag=sdpfrag,
            ),
        )

    async def close(self, resource: PeerResource) -> PeerAnswer:
        """Close one WHEP viewer."""
        self.peers.pop(resource.peer_id, None)
        return await self._ask(
            "egress",
            PeerClose(
                stream_id=resource.stream_id,
                peer_id=resource.peer_id,
                request_id=secrets.token_hex(8),
            ),
        )

    def forget_stream(self, stream_id: str) -> None:
        """The stream ended: its peers are gone with it."""
        for peer_id in [p for p, r in self.peers.items() if r.stream_id == stream_id]:
            del self.peers[peer_id]

    def on_peer_gone(self, worker: str, message: PeerGone) -> None:
        """A worker's peer connection ended by itself (the viewer left, ICE failed)."""
        resource = self.peers.get(message.peer_id)
        if resource is not None and resource.stream_id == message.stream_id:
            log.info(
                "stream %s: WHEP viewer %s gone (%s)",
                message.stream_id,
                message.peer_id,
                message.reason,
            )
            del self.peers[message.peer_id]

    async def _ask(
        self, worker: str, message: PeerOffer | PeerCandidates | PeerClose
    ) -> PeerAnswer:
        """Ask through the supervisor's one request/reply path: a worker that is not ready, dies
        or restarts while the peer is being set up answers 503 at once."""
        try:
            reply = await self.supervisor.requests.ask(
                worker, message, message.request_id, self.answer_timeout_s
            )
        except WorkerUnavailable as exc:  # WorkerLost too
            return self._failed(message, 503, f"the {worker} worker is unavailable: {exc}")
        except ReplyTimeout:
            return self._failed(
                message,
                503,
                f"the {worker} worker did not answer within {self.answer_timeout_s:g}s",
            )
        assert isinstance(reply, PeerAnswer)
        return reply

    @staticmethod
    def _failed(
        message: PeerOffer | PeerCandidates | PeerClose, status: int, error: str
    ) -> PeerAnswer:
        return PeerAnswer(
            stream_id=message.stream_id,
            peer_id=message.peer_id,
            request_id=message.request_id,
            status=status,
            error=error,
        )
