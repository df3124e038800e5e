"""WebRTC signalling in the parent: offers, late candidates and closes, relayed to the worker
that holds the peer connection (ingest for a WHIP publisher, egress for WHEP viewers), and the
HTTP resources they are known by.

The parent never builds a peer connection. It checks an offer's shape (``check_offer``), asks the
worker with a typed message and waits for its ``PeerAnswer`` under ``answer_timeout_s``. Each
resource has a strong ETag naming its ICE session (RFC 9725: a PATCH that restarts ICE with new
credentials is refused with 422).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass, field

from byoc.ice_servers import IceServers
from byoc.livepeer.webrtc.sdp import ice_credentials
from byoc.supervisor import Supervisor
from ipc.channel import ChannelClosed
from ipc.messages import (
    IceServer,
    Message,
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
        self._replies: dict[str, asyncio.Future[PeerAnswer]] = {}
        supervisor.on_message(self.on_worker_message)

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

    async def on_worker_message(self, worker: str, message: Message) -> None:
        if isinstance(message, PeerAnswer):
            future = self._replies.pop(message.request_id, None)
            if future is not None and not future.done():
                future.set_result(message)
        elif isinstance(message, PeerGone):
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
        future: asyncio.Future[PeerAnswer] = asyncio.get_running_loop().create_future()
        self._replies[message.request_id] = future
        try:
            try:
                await self.supervisor.send(worker, message)
            except (ChannelClosed, OSError) as exc:
                return self._failed(message, 503, f"the {worker} worker is unavailable: {exc}")
            try:
                return await asyncio.wait_for(future, self.answer_timeout_s)
            except asyncio.TimeoutError:
                return self._failed(
                    message,
                    503,
                    f"the {worker} worker did not answer within {self.answer_timeout_s:g}s",
                )
        finally:
            self._replies.pop(message.request_id, None)
            if not future.done():
                with contextlib.suppress(asyncio.InvalidStateError):
                    future.cancel()

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
