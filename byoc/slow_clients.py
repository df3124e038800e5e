"""Connections that trickle their request in too slowly are closed.

aiohttp bounds idle keep-alive connections but not a request in progress: a client that sends
its headers one byte a second, or a body a few bytes at a time, holds a connection (and a
handler) for as long as it likes. This module adds two bounds at the protocol level:

- the request line and headers must arrive within ``header_timeout_s`` of their first byte
  (or of the connection's opening); past that the client gets a 408 JSON error and the
  connection is closed;
- while a handler waits for body bytes, the client must send at least ``min_body_rate`` bytes a
  second, measured over ``rate_window_s``. This is a rate, not a total deadline: a large
  upload that keeps moving is never cut, and a response that takes long (a long-poll) does not
  count against the client.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger(__name__)


class SlowClientError(ConnectionResetError):
    """Raised in a handler that waits for a body the client sends too slowly (it is closed)."""


@dataclass(frozen=True)
class SlowClientLimits:
    """The bounds; ``0`` disables one."""

    header_timeout_s: float = 10.0
    min_body_rate: int = 1024
    rate_window_s: float = 5.0


def _timeout_response() -> bytes:
    body = json.dumps(
        {"error": "request headers not received in time", "status_code": 408}
    ).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        "Content-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    return head + body


class GuardedRequestHandler(RequestHandler):
    """aiohttp's per-connection protocol with the header deadline and the body rate check."""

    def __init__(self, manager: Any, *, limits: SlowClientLimits, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._limits = limits
        self._header_timer: asyncio.TimerHandle | None = None
        self._rate_timer: asyncio.TimerHandle | None = None
        self._window_bytes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm_header_timer()
        if self._limits.min_body_rate > 0:
            self._rate_timer = self._loop.call_later(
                self._limits.rate_window_s, self._check_body_rate
            )

    def connection_lost(self, exc: BaseException | None) -> None:
        for timer in (self._header_timer, self._rate_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._rate_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._window_bytes += len(data)
        between_requests = not self._request_in_progress and not self._messages
        before = self._request_count
        super().data_received(data)
        if self._request_count > before:
            self._cancel_header_timer()  # a whole request line and header block arrived
        elif between_requests and self._header_timer is None:
            self._arm_header_timer()  # the first bytes of the next request's headers

    # --- internals -------------------------------------------------------------------------

    def _arm_header_timer(self) -> None:
        if self._limits.header_timeout_s > 0:
            self._header_timer = self._loop.call_later(
                self._limits.header_timeout_s, self._headers_too_slow
            )

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _peer(self) -> str:
        transport = self.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        return str(peer[0]) if isinstance(peer, tuple) else "unknown"

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self._request_in_progress or self._messages or self.transport is None:
            return
        log.warning(
            "closing a connection from %s: headers not received within %gs",
            self._peer(),
            self._limits.header_timeout_s,
        )
        self.transport.write(_timeout_response())
        self.force_close()

    def _check_body_rate(self) -> None:
        limits = self._limits
        received, self._window_bytes = self._window_bytes, 0
        self._rate_timer = self._loop.call_later(limits.rate_window_s, self._check_body_rate)
        request = self._current_request
        if request is None or self.transport is None:
            return
        payload = request.content
        # Only a handler that is waiting for body bytes makes the client the slow side.
        waiting = getattr(payload, "_waiter", None) is not None
        if payload.is_eof() or not waiting:
            return
        if received >= limits.min_body_rate * limits.rate_window_s:
            return
        log.warning(
            "closing a connection from %s: %s %s body arrived at %.0f B/s (minimum %d B/s)",
            self._peer(),
            request.method,
            request.path,
            received / limits.rate_window_s,
            limits.min_body_rate,
        )
        payload.set_exception(
            SlowClientError(f"request body slower than {limits.min_body_rate} B/s")
        )
        self.force_close()


class GuardedServer(web.Server):
    """``web.Server`` whose connections are ``GuardedRequestHandler``s."""

    def __init__(self, *args: Any, limits: SlowClientLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits

    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(self, loop=self._loop, limits=self.limits, **self._kwargs)


class GuardedAppRunner(web.AppRunner):
    """``web.AppRunner`` that serves its application through a ``GuardedServer``."""

    def __init__(self, app: web.Application, *, limits: SlowClientLimits, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._limits = limits

    def limit_shutdown(self, seconds: float) -> None:
        """How long ``cleanup`` waits for handlers still running (a shutdown's time left)."""
        self._shutdown_timeout = seconds

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return GuardedServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            limits=self._limits,
            **server._kwargs,
        )
