"""The runner's one error format: ``{"error": "...", "status_code": N}`` with that HTTP status.

``error_middleware`` turns every error into it: our own ``ApiError``, aiohttp's HTTP exceptions
(unknown route, wrong method, body too large) and unexpected exceptions (500, logged). Routes
whose protocol defines its own error bodies (trickle) are listed in ``passthrough_prefixes``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from aiohttp.typedefs import Middleware

from ipc.echo import clip_text

log = logging.getLogger(__name__)

MAX_BODY_BYTES_KEY: web.AppKey[int] = web.AppKey("max_body_bytes", int)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An error answered to the client as JSON with ``status``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        """Extra response headers (e.g. ``Retry-After`` on a 503)."""


def json_error(status: int, message: str) -> web.Response:
    """A JSON error response in the runner's format (the message clipped: it may quote input)."""
    return web.json_response({"error": clip_text(message), "status_code": status}, status=status)


def error_middleware(passthrough_prefixes: Iterable[str] = ()) -> Middleware:
    """Middleware that answers every error in the runner's JSON format."""
    prefixes = tuple(passthrough_prefixes)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if prefixes and request.path.startswith(prefixes):
            return await handler(request)
        try:
            return await handler(request)
        except ApiError as exc:
            response = json_error(exc.status, exc.message)
            response.headers.update(exc.headers)
            return response
        except ConnectionResetError as exc:
            # The client is gone (or was cut off as too slow): nobody reads this answer.
            log.info("%s %s: connection lost: %s", request.method, request.path, exc)
            return json_error(408, f"connection lost: {exc}")
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            message = _http_message(exc, request)
            return json_error(exc.status, message)
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            return json_error(500, "internal server error")

    return middleware


def _http_message(exc: web.HTTPException, request: web.Request) -> str:
    if isinstance(exc, web.HTTPNotFound):
        return f"no route for {request.method} {request.path}"
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return f"method {request.method} not allowed on {request.path} (allowed: {allowed})"
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return (
            f"request body too large (limit {request.app.get(MAX_BODY_BYTES_KEY, 'unknown')} bytes)"
        )
    text = exc.text or exc.reason
    return text.removeprefix(f"{exc.status}: ")
