"""The worker token: with ``--token`` set, orchestrators must send ``Authorization: Bearer <token>``.

go-livepeer sends it on every job and stream request when the capability was registered with a
token, and evicts the capability when the worker answers 401, so a runner whose token changed
is dropped until it registers again (the registration service re-registers at once on a 401).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from byoc.errors import json_error

# Routes open without the token: liveness checks must work for load balancers and humans, and
# the browser page must load before its user can type the token (it holds no session data).
PUBLIC_PATHS = frozenset({"/health", "/", "/workflows"})
PUBLIC_PREFIXES = ("/web/",)
# The Live Runner app API is called by clients through the orchestrator's session proxy, which
# sends no Bearer token: those requests are authorised by their session id and token instead.
SESSION_AUTHORISED_PREFIXES = ("/live-runner/",)
# Routes an orchestrator never calls: a refused request there (a scraper without the token) is
# not a sign that the orchestrator holds an old token, so it does not trigger re-registration.
NOT_ORCHESTRATOR_PATHS = frozenset({"/metrics"})


def token_matches(header: str | None, token: str) -> bool:
    """True when ``header`` is exactly ``Bearer <token>`` (constant-time compare)."""
    if not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer ") :].encode(), token.encode())


def auth_middleware(
    token: str, on_rejected: Callable[[], Awaitable[None] | None] | None = None
) -> Middleware:
    """401 JSON for every routed request without the right Bearer token (when one is set)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not token or request.match_info.http_exception is not None:
            return await handler(request)  # no token configured, or 404/405 answered as such
        if (
            request.path in PUBLIC_PATHS
            or request.path.startswith(PUBLIC_PREFIXES)
            or request.path.startswith(SESSION_AUTHORISED_PREFIXES)
            or request.method == "OPTIONS"
        ):
            return await handler(request)  # a CORS preflight never carries credentials
        if token_matches(request.headers.get("Authorization"), token):
            return await handler(request)
        if on_rejected is not None and request.path not in NOT_ORCHESTRATOR_PATHS:
            result = on_rejected()
            if result is not None:
                await result
        return json_error(401, "missing or wrong Authorization Bearer token")

    return middleware
