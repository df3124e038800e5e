"""Graceful drain: stop taking new work, let what runs finish, then let the runner stop.

A drain starts on the first SIGTERM or on ``POST /admin/drain`` (behind the Bearer token like
every route but ``/health``). From then on

- every request that would admit new work (any ``POST`` except ``/stream/params``,
  ``/stream/stop`` and ``/admin/drain``) is answered 503 with ``Retry-After``;
- ``/health`` reports ``"status": "draining"``;
- the runner unregisters from every orchestrator at once (``Runner.drain_until_idle``);
- live sessions run until they end or ``--drain-timeout`` passes; the runner then stops them
  cleanly (final segment and a ``stopped`` event) as on any shutdown.

A second SIGTERM, or a SIGINT, stops at once (``byoc.serve``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from byoc.errors import json_error

log = logging.getLogger(__name__)

DRAIN_PATH = "/admin/drain"
STILL_OPEN_WHILE_DRAINING = frozenset(
    {"/stream/params", "/stream/stop", "/live-runner/update", "/live-runner/stop", DRAIN_PATH}
)
"""POST routes that act on running sessions (or on the drain itself), not admit new ones."""
IDLE_POLL_S = 0.2


class Drain:
    """Whether the runner drains, since when, and until when at most."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.started_at: float | None = None  # monotonic
        self.requested = asyncio.Event()

    @property
    def draining(self) -> bool:
        return self.started_at is not None

    def begin(self, reason: str) -> bool:
        """Start draining; False when a drain was already under way."""
        if self.started_at is not None:
            return False
        self.started_at = time.monotonic()
        self.requested.set()
        log.info("draining (%s): no new sessions; live ones get up to %gs", reason, self.timeout_s)
        return True

    def retry_after_s(self) -> int:
        """Seconds a refused caller should wait: what is left of the drain, at least 1."""
        if self.started_at is None:
            return 1
        left = self.timeout_s - (time.monotonic() - self.started_at)
        return max(1, math.ceil(left))


def _session_params(path: str) -> bool:
    """``POST /byoc/session/{id}/params``: live parameters of a running session."""
    return path.startswith("/byoc/session/") and path.endswith("/params")


def drain_middleware(drain: Drain, on_refused: Callable[[], None] | None = None) -> Middleware:
    """503 with ``Retry-After`` for every request that would admit new work while draining;
    ``on_refused`` counts each one."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if (
            drain.draining
            and request.method == "POST"
            and request.path not in STILL_OPEN_WHILE_DRAINING
            and not _session_params(request.path)
            and request.match_info.http_exception is None
        ):
            if on_refused is not None:
                on_refused()
            response = json_error(503, "runner is draining: it takes no new sessions")
            response.headers["Retry-After"] = str(drain.retry_after_s())
            return response
        return await handler(request)

    return middleware


DRAIN_KEY = web.AppKey("drain", Drain)
LiveCounter = Callable[[], int]
LIVE_COUNT_KEY: web.AppKey[LiveCounter] = web.AppKey("drain_live_count")


async def admin_drain(request: web.Request) -> web.Response:
    """``POST /admin/drain``: start a drain (idempotent); 202 with the sessions still live."""
    drain = request.app[DRAIN_KEY]
    started = drain.begin(f"{DRAIN_PATH} from {request.remote}")
    return web.json_response(
        {
            "status": "draining",
            "already_draining": not started,
            "live_sessions": request.app[LIVE_COUNT_KEY](),
            "drain_timeout_s": drain.timeout_s,
        },
        status=202,
    )


def add_routes(app: web.Application, drain: Drain, live_count: LiveCounter) -> None:
    app[DRAIN_KEY] = drain
    app[LIVE_COUNT_KEY] = live_count
    app.router.add_post(DRAIN_PATH, admin_drain)


async def wait_until_idle(live_count: LiveCounter, timeout_s: float, abort: asyncio.Event) -> bool:
    """Wait until ``live_count()`` is 0 (True), ``timeout_s`` passes or ``abort`` is set (False)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while live_count() > 0:
        left = deadline - loop.time()
        if left <= 0 or abort.is_set():
            return False
        try:
            await asyncio.wait_for(abort.wait(), min(IDLE_POLL_S, left))
        except asyncio.TimeoutError:
            pass
    return True
