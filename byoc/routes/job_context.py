"""What every job handler gets: the parsed request, and helpers shared by the job routes."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from byoc.errors import ApiError
from byoc.runtime import Runtime
from byoc.sessions import Session
from ipc.untrusted_json import UntrustedJsonError, loads_untrusted


@dataclass
class JobContext:
    """One job request, parsed: the capability, its body and its time limit."""

    request: web.Request
    runtime: Runtime
    capability: str
    body: bytes
    timeout_s: float


JobHandler = Callable[[JobContext], Awaitable[web.StreamResponse]]


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object (whatever the Content-Type says), or a 400."""
    try:
        # The server's client_max_size already bounds the body; depth and numbers are checked here.
        data = loads_untrusted(body, what="request body", max_bytes=len(body))
    except UntrustedJsonError as exc:
        raise ApiError(400, f"request body must be a JSON object ({exc})") from None
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object")
    return data


def metadata_header(session: Session) -> dict[str, str]:
    return {"X-Metadata": json.dumps({"session_id": session.id})}
