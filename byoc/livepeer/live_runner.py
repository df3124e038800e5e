"""Client of go-livepeer's Live Runner protocol, runner side (go-livepeer v0.9.0 and later).

Wire facts (go-livepeer ``ai/runner/live_runner.go`` and ``server/ai_http.go``):

- ``POST {orch}/runners/heartbeat`` registers (unknown ``runner_id``, ``Authorization`` = the
  orchestrator secret) or keeps a registration alive (known id, ``Authorization`` = the heartbeat
  secret the first answer gave). The header is the raw secret, no ``Bearer``. 200 answers JSON
  with ``runner_id``, ``orchestrator``, ``heartbeat_interval``/``heartbeat_ttl`` (Go durations),
  ``session_ids`` (authoritative), and on a registration only ``heartbeat_secret`` and ``o2r``.
  401: wrong secret (what an orchestrator restart looks like); 404: registration disabled, or the
  runner expired; 400: a body it refuses. Errors are plain text.
- ``POST {orch}/runners/{id}/unregister`` with the heartbeat secret: 204.
- Session callbacks under ``Livepeer-Session-Control`` (``{ctl}``), each with the
  ``Livepeer-Session-Token`` header: ``POST {ctl}/channels`` creates trickle channels,
  ``POST {ctl}/stop`` releases the session; 401 bad token, 404 unknown session.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from typing import Any

import aiohttp

HEARTBEAT_PATH = "/runners/heartbeat"
DEFAULT_TIMEOUT_S = 5.0

HEADER_ROUTE = "Livepeer-Runner-Route"
HEADER_SESSION_ID = "Livepeer-Session-Id"
HEADER_SESSION_TOKEN = "Livepeer-Session-Token"
HEADER_SESSION_CONTROL = "Livepeer-Session-Control"

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration string (``"5s"``, ``"1m30s"``, ``"500ms"``); ValueError if not one."""
    text = text.strip()
    if text in ("0", ""):
        raise ValueError(f"not a positive duration: {text!r}")
    position, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or total <= 0:
        raise ValueError(f"not a Go duration: {text!r}")
    return total


class LiveRunnerError(Exception):
    """Base class: the orchestrator did not take the request."""


class OrchestratorUnreachable(LiveRunnerError):
    """No HTTP answer (refused, reset, timeout, TLS failure) or an answer that is not the API's."""


class Rejected(LiveRunnerError):
    """The orchestrator answered with an error status (plain-text body)."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body.strip()[:300] or '(empty body)'}")
        self.status = status
        self.body = body.strip()


@dataclass(frozen=True)
class Channel:
    """A trickle channel the orchestrator hosts: ``url`` for clients, ``internal_url`` for us."""

    name: str
    channel_name: str
    url: str
    internal_url: str
    mime_type: str = "application/octet-stream"


@dataclass(frozen=True)
class HeartbeatReply:
    """A 200 heartbeat answer."""

    runner_id: str
    orchestrator: str
    interval_s: float
    ttl_s: float
    session_ids: tuple[str, ...]
    heartbeat_secret: str = ""
    o2r_url: str = ""

    @classmethod
    def from_json(cls, data: Any) -> HeartbeatReply:
        """Parse an answer; ``OrchestratorUnreachable`` for one that is not the API's."""
        if not isinstance(data, dict) or not isinstance(data.get("runner_id"), str):
            raise OrchestratorUnreachable("heartbeat answer without a runner_id")
        try:
            interval = parse_go_duration(str(data.get("heartbeat_interval") or "5s"))
            ttl = parse_go_duration(str(data.get("heartbeat_ttl") or "20s"))
        except ValueError as exc:
            raise OrchestratorUnreachable(f"heartbeat answer: {exc}") from None
        ids = data.get("session_ids") or []
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise OrchestratorUnreachable("heartbeat answer: session_ids is not a list of strings")
        o2r = data.get("o2r")
        o2r_url = o2r.get("url", "") if isinstance(o2r, dict) else ""
        return cls(
            runner_id=data["runner_id"],
            orchestrator=str(data.get("orchestrator") or "").rstrip("/"),
            interval_s=interval,
            ttl_s=ttl,
            session_ids=tuple(ids),
            heartbeat_secret=str(data.get("heartbeat_secret") or ""),
            o2r_url=str(o2r_url or ""),
        )


@dataclass(frozen=True)
class HeartbeatRequest:
    """What the runner tells the orchestrator on every heartbeat."""

    runner_url: str
    app: str
    capacity: int
    runner_id: str = ""
    mode: str = "persistent"
    price: float = 0.0
    price_unit: str = "hour"
    version: str = ""
    gpu: dict[str, Any] | None = None
    session_ids: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "runner_url": self.runner_url,
            "app": self.app,
            "capacity": int(self.capacity),
            "mode": self.mode,
            "status": "ready",
            "session_ids": list(self.session_ids),
        }
        if self.runner_id:
            body["runner_id"] = self.runner_id
        if self.price > 0:
            body["price_info"] = {"price": self.price, "currency": "usd", "unit": self.price_unit}
        if self.version:
            body["version"] = self.version
        if self.gpu:
            body["gpu"] = self.gpu
        return body


async def _request(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    body: Any = None,
    timeout_s: float,
    verify_tls: bool,
) -> tuple[int, str]:
    try:
        async with http.request(
            method,
            url,
            data=None if body is None else json.dumps(body),
            headers={"Content-Type": "application/json", **headers}
            if body is not None
            else headers,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            ssl=True if verify_tls else False,
        ) as resp:
            return resp.status, await resp.text(errors="replace")
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        raise OrchestratorUnreachable(f"{type(exc).__name__}: {exc}") from None


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise OrchestratorUnreachable(f"{what}: answer is not JSON") from None


async def heartbeat(
    http: aiohttp.ClientSession,
    orch_url: str,
    secret: str,
    request: HeartbeatRequest,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    verify_tls: bool = False,
) -> HeartbeatReply:
    """One heartbeat (or registration); raises ``Rejected`` or ``OrchestratorUnreachable``."""
    status, text = await _request(
        http,
        "POST",
        orch_url.rstrip("/") + HEARTBEAT_PATH,
        headers={"Authorization": secret},
        body=request.to_json(),
        timeout_s=timeout_s,
        verify_tls=verify_tls,
    )
    if status != 200:
        raise Rejected(status, text)
    return HeartbeatReply.from_json(_json(text, "heartbeat"))


async def unregister(
    http: aiohttp.ClientSession,
    orch_url: str,
    runner_id: str,
    heartbeat_secret: str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    verify_tls: bool = False,
) -> None:
    """``POST /runners/{id}/unregister``; raises ``Rejected`` unless 204/200."""
    status, text = await _request(
        http,
        "POST",
        f"{orch_url.rstrip('/')}/runners/{runner_id}/unregister",
        headers={"Authorization": heartbeat_secret},
        timeout_s=timeout_s,
        verify_tls=verify_tls,
    )
    if status not in (200, 204):
        raise Rejected(status, text)


async def create_channels(
    http: aiohttp.ClientSession,
    control_url: str,
    token: str,
    channels: dict[str, str],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    verify_tls: bool = False,
) -> dict[str, Channel]:
    """Create (or get, if they exist) the session's channels ``{name: mime_type}``, by name."""
    status, text = await _request(
        http,
        "POST",
        control_url.rstrip("/") + "/channels",
        headers={HEADER_SESSION_TOKEN: token},
        body={"channels": [{"name": n, "mime_type": m} for n, m in channels.items()]},
        timeout_s=timeout_s,
        verify_tls=verify_tls,
    )
    if status != 200:
        raise Rejected(status, text)
    data = _json(text, "channels")
    items = data.get("channels") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise OrchestratorUnreachable("channels answer without a channel list")
    out: dict[str, Channel] = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("url"), str):
            raise OrchestratorUnreachable("channels answer: a channel without a url")
        name = str(item.get("name", ""))
        out[name] = Channel(
            name=name,
            channel_name=str(item.get("channel_name", "")),
            url=item["url"],
            internal_url=str(item.get("internal_url") or item["url"]),
            mime_type=str(item.get("mime_type") or "application/octet-stream"),
        )
    missing = set(channels) - set(out)
    if missing:
        raise OrchestratorUnreachable(f"channels answer lacks {', '.join(sorted(missing))}")
    return out


async def stop_session(
    http: aiohttp.ClientSession,
    control_url: str,
    token: str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    verify_tls: bool = False,
) -> None:
    """``POST {ctl}/stop``: ask the orchestrator to release the session (404: already gone)."""
    status, text = await _request(
        http,
        "POST",
        control_url.rstrip("/") + "/stop",
        headers={HEADER_SESSION_TOKEN: token},
        timeout_s=timeout_s,
        verify_tls=verify_tls,
    )
    if status not in (200, 204, 404):
        raise Rejected(status, text)
