"""A scripted worker for stand-in tests: a real aiohttp server that records every request it gets
and answers what the test scripted for the path, so the orchestrator's side can be checked
byte for byte (headers forwarded, path joining, bodies, SSE)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

Reply = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class CaptureWorker:
    """Records requests; ``replies[path]`` decides the answer (default: 200 ``{"ok": true}``)."""

    replies: dict[str, Reply] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(
            Seen(request.method, request.path, request.query_string, dict(request.headers), body)
        )
        reply = self.replies.get(request.path)
        if reply is not None:
            return await reply(request)
        return web.json_response({"ok": True})

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def fixed(status: int, body: bytes = b"", content_type: str | None = None, **headers: str) -> Reply:
    async def reply(request: web.Request) -> web.StreamResponse:
        response = web.Response(status=status, body=body, headers=headers)
        if content_type is not None:
            response.content_type = content_type
        return response

    return reply


def delayed(seconds: float, then: Reply) -> Reply:
    async def reply(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return await then(request)

    return reply


def sse(lines: list[bytes], *, status: int = 200, pause: float = 0.0) -> Reply:
    async def reply(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=status, headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for line in lines:
            await response.write(line)
            if pause:
                await asyncio.sleep(pause)
        await response.write_eof()
        return response

    return reply
