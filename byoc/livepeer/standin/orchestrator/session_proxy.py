"""The stand-in's reverse proxy to a live runner, as go-livepeer's ``proxyLiveRunner`` (Go's
``httputil.ReverseProxy`` with a ``Rewrite``):

- any method; path = the runner URL's path joined with the app path; the query kept; ``Host``
  = the runner's host;
- request headers kept except hop-by-hop ones and ``X-Forwarded-*`` / ``Forwarded`` (a
  ``Rewrite`` proxy drops them); the four ``Livepeer-*`` session headers set, overwriting
  whatever the client sent;
- bodies streamed both ways as they come (an SSE answer reaches the client event by event),
  compressed bodies passed as they are;
- an upstream failure before the answer: 502 with the error text;
- a WebSocket upgrade is passed through: the runner's handshake answer decides, then messages
  flow both ways until either side closes (Go copies the upgraded bytes; here whole messages).
"""

from __future__ import annotations

import asyncio
import contextlib
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
_WEBSOCKET_HANDSHAKE = frozenset(
    ("sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions")
)


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


def is_websocket_upgrade(request: web.Request) -> bool:
    connection = {t.strip().lower() for t in request.headers.get("Connection", "").split(",")}
    return "upgrade" in connection and request.headers.get("Upgrade", "").lower() == "websocket"


async def forward(
    request: web.Request,
    http: aiohttp.ClientSession,
    target_url: str,
    session_headers: Mapping[str, str],
) -> web.StreamResponse:
    """Proxy ``request`` to ``target_url`` and stream the answer back."""
    if is_websocket_upgrade(request):
        return await forward_websocket(request, http, target_url, session_headers)
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


async def forward_websocket(
    request: web.Request,
    http: aiohttp.ClientSession,
    target_url: str,
    session_headers: Mapping[str, str],
) -> web.StreamResponse:
    """Open the same WebSocket on the runner, then relay messages both ways until one closes."""
    headers = {
        name: value
        for name, value in outbound_headers(request.headers, session_headers).items()
        if name.lower() not in _WEBSOCKET_HANDSHAKE and name.lower() != "sec-websocket-protocol"
    }
    offered = request.headers.get("Sec-WebSocket-Protocol", "")
    protocols = [p.strip() for p in offered.split(",") if p.strip()]
    try:
        upstream = await http.ws_connect(
            target_url, headers=headers, protocols=protocols, autoping=False
        )
    except aiohttp.WSServerHandshakeError as exc:
        # The runner answered without upgrading: its status goes back (its body does not).
        return go_error(exc.status, exc.message)
    except (aiohttp.ClientError, OSError) as exc:
        log.warning("live runner websocket to %s failed: %r", target_url, exc)
        return go_error(502, str(exc) or type(exc).__name__)
    async with upstream:
        client = web.WebSocketResponse(
            protocols=[upstream.protocol] if upstream.protocol else (), autoping=False
        )
        await client.prepare(request)
        to_runner = asyncio.create_task(_pump(client, upstream))
        to_client = asyncio.create_task(_pump(upstream, client))
        try:
            await asyncio.wait({to_runner, to_client}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (to_runner, to_client):
                task.cancel()
            await asyncio.gather(to_runner, to_client, return_exceptions=True)
            with contextlib.suppress(Exception):
                await client.close()
        return client


async def _pump(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
) -> None:
    async for message in source:
        if message.type == aiohttp.WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif message.type == aiohttp.WSMsgType.BINARY:
            await sink.send_bytes(message.data)
        elif message.type == aiohttp.WSMsgType.PING:
            await sink.ping(message.data)
        elif message.type == aiohttp.WSMsgType.PONG:
            await sink.pong(message.data)
        else:
            break
    await sink.close(code=source.close_code or aiohttp.WSCloseCode.OK)
