"""The stand-in's reverse proxy to a live runner, as go-livepeer's ``proxyLiveRunner`` (Go's
``httputil.ReverseProxy`` with a ``Rewrite``):

- any method; path = the runner URL's path joined with the app path; the query kept; ``Host``
  = the runner's host;
- request headers kept except hop-by-hop ones and ``X-Forwarded-*`` / ``Forwarded`` (a
  ``Rewrite`` proxy drops them); the four ``Livepeer-*`` session headers set, overwriting
  whatever the client sent;
- bodies streamed both ways as they come (an SSE answer reaches the client event by event),
  compressed bodies passed as they are;
- an upstream failure before the answer: 502 with the error text.

WebSocket upgrades are not proxied here (go-livepeer's proxy does pass them).
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import AsyncIterator, Mapping
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from aiohttp import web

from byoc.livepeer.standin.orchestrator.gohttp import go_error

log = logging.getLogger(__name__)

HEADER_ROUTE = "Livepeer-Runner-Route"
HEADER_SESSION_ID = "Livepeer-Session-Id"
HEADER_SESSION_TOKEN = "Livepeer-Session-Token"
HEADER_SESSION_CONTROL = "Livepeer-Session-Control"

# RFC 7230 hop-by-hop headers, which Go's ReverseProxy removes both ways.
HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Proxy-Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Te",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
    )
)
_DROPPED_REQUEST = HOP_BY_HOP | {
    "host",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "content-length",  # aiohttp frames the streamed body itself
}
_DROPPED_RESPONSE = HOP_BY_HOP | {"content-length"}


def proxy_target(runner_url: str, app_path: str, query: str) -> str:
    """``url.JoinPath("/", target.Path, appPath)`` on the runner URL, with the client's query."""
    parts = urlsplit(runner_url)
    joined = posixpath.join("/", parts.path.lstrip("/"), app_path)
    path = posixpath.normpath(joined) if joined != "/" else "/"
    if app_path.endswith("/") and not path.endswith("/"):
        path += "/"
    return urlunsplit((parts.scheme, parts.netloc, path, query, ""))


def outbound_headers(incoming: Mapping[str, str], session: Mapping[str, str]) -> dict[str, str]:
    """The client's headers minus hop-by-hop and forwarding ones, plus the session headers."""
    connection_tokens = {
        token.strip().lower()
        for value in _all_values(incoming, "Connection")
        for token in value.split(",")
    }
    headers: dict[str, str] = {}
    for name, value in incoming.items():
        lower = name.lower()
        if lower in _DROPPED_REQUEST or lower in connection_tokens:
            continue
        if lower in {k.lower() for k in session}:
            continue
        headers[name] = value
    headers.update(session)
    return headers


def _all_values(headers: Mapping[str, str], name: str) -> list[str]:
    getall = getattr(headers, "getall", None)
    if getall is not None:
        return list(getall(name, []))
    value = headers.get(name)
    return [value] if value is not None else []


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_any():
        yield chunk


async def forward(
    request: web.Request,
    http: aiohttp.ClientSession,
    target_url: str,
    session_headers: Mapping[str, str],
) -> web.StreamResponse:
    """Proxy ``request`` to ``target_url`` and stream the answer back."""
    headers = outbound_headers(request.headers, session_headers)
    data = _body(request) if request.body_exists else None
    try:
        upstream = await http.request(
            request.method,
            target_url,
            headers=headers,
            data=data,
            allow_redirects=False,
            auto_decompress=False,
        )
    except (aiohttp.ClientError, OSError) as exc:
        log.warning("live runner proxy to %s failed: %r", target_url, exc)
        return go_error(502, str(exc) or type(exc).__name__)
    async with upstream:
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for name, value in upstream.headers.items():
            if name.lower() not in _DROPPED_RESPONSE:
                response.headers.add(name, value)
        if upstream.headers.get("Content-Length") is not None:
            response.content_length = int(upstream.headers["Content-Length"])
        await response.prepare(request)
        try:
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
        except (aiohttp.ClientError, ConnectionError) as exc:
            log.info("live runner proxy from %s ended early: %r", target_url, exc)
            return response
        await response.write_eof()
        return response
