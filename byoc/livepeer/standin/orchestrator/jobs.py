"""The stand-in's job proxy: ``POST /process/request/{...}`` forwarded to the registered worker as
go-livepeer's orchestrator does it (``ProcessJob`` in ``byoc/job_orchestrator.go``).

- The ``Livepeer`` header is required and checked (``gohttp.parse_job_header``); an unknown
  capability gets 503 ``No capacity available for capability``.
- Path: ``/process/request/`` is stripped; a non-empty rest goes to ``{url}/{rest}``, an empty one
  to ``{url}`` as is. The query string is dropped.
- Headers to the worker: ``Content-Type`` (empty when the client sent none), ``Content-Length``,
  ``Authorization: Bearer <token>`` when a token was registered, and Go's client defaults. Nothing
  else (no ``Livepeer`` header, no client auth).
- ``timeout_seconds`` bounds the wait for the worker's response headers (an SSE body then gets
  as long again). A timeout gives 500 and leaks the load slot, as in go-livepeer.
- A connection error, or a 401 from the worker, removes the capability and answers 500.
- Non-SSE: a status above 399 is relayed as a plain-text error with the worker's body; any
  other status becomes 200 with the worker's body. Only ``Content-Type`` and ``X-Metadata``
  are copied; ``Livepeer-Balance`` is added.
- SSE (``text/event-stream``): 200, relayed line by line (a line of 64 KiB or more silently ends
  the relay); before a line containing ``[DONE]`` a ``data: {"balance": ...}`` event is
  injected. A worker that closes without ``[DONE]`` leaves go-livepeer writing empty lines
  until the timeout; the stand-in does the same, slowly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from byoc.livepeer.header import HEADER_NAME
from byoc.livepeer.standin.orchestrator.gohttp import BadJobRequest, go_error, parse_job_header
from byoc.livepeer.standin.orchestrator.registry import ExternalCapability, Registry

log = logging.getLogger(__name__)

PREFIX = "/process/request/"
SCANNER_MAX_LINE = 64 * 1024  # bufio.Scanner's default token size
EMPTY_LINE_INTERVAL_S = 0.1
BALANCE = "0"
BALANCE_EVENT = b'data: {"balance": 0.000}\n\n'
GO_CLIENT_HEADERS = {"User-Agent": "Go-http-client/1.1", "Accept-Encoding": "gzip"}


def worker_url(capability_url: str, request_path: str) -> str:
    """go-livepeer's path joining (no normalisation: a trailing slash on the URL doubles)."""
    rest = request_path[len(PREFIX) :] if request_path.startswith(PREFIX) else ""
    return f"{capability_url}/{rest}" if rest else capability_url


def bearer(capability: ExternalCapability) -> dict[str, str]:
    return {"Authorization": f"Bearer {capability.token}"} if capability.token else {}


class JobProxy:
    """Forwards jobs to registered workers."""

    def __init__(self, registry: Registry, http: aiohttp.ClientSession) -> None:
        self.registry = registry
        self.http = http

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return go_error(405, "Method not allowed")
        try:
            job = parse_job_header(request.headers.get(HEADER_NAME))
        except BadJobRequest as exc:
            return go_error(400, str(exc))
        capability = self.registry.get(job.capability)
        if capability is None:
            return go_error(503, "No capacity available for capability")
        capability.load += 1
        body = await request.read()
        url = worker_url(capability.url, request.path)
        headers = {
            **GO_CLIENT_HEADERS,
            "Content-Type": request.headers.get("Content-Type", ""),
            **bearer(capability),
        }
        try:
            response = await asyncio.wait_for(
                self.http.post(url, data=body, headers=headers, ssl=False), job.timeout_seconds
            )
        except asyncio.TimeoutError:
            return go_error(500, "job not able to be processed err=context deadline exceeded")
        except (aiohttp.ClientError, OSError) as exc:
            self.registry.remove(capability.name, f"worker unreachable: {exc!r}")
            return go_error(500, f"job not able to be processed, removing capability err={exc}")
        try:
            if response.status == 401:
                self.registry.remove(capability.name, "worker answered 401")
                return go_error(
                    500,
                    "job not able to be processed, removing capability err=worker auth token failed",
                )
            content_type = response.headers.get("Content-Type", "")
            if "text/event-stream" in content_type:
                return await self._relay_sse(request, response, job.timeout_seconds)
            data = await response.read()
            if response.status > 399:
                return go_error(response.status, data.decode("utf-8", "replace"))
            out = web.Response(status=200, body=data, headers={"Livepeer-Balance": BALANCE})
            if content_type:
                out.headers["Content-Type"] = content_type
            if "X-Metadata" in response.headers:
                out.headers["X-Metadata"] = response.headers["X-Metadata"]
            return out
        finally:
            response.release()
            if self.registry.get(capability.name) is capability:
                self.registry.release(capability)

    async def _relay_sse(
        self, request: web.Request, upstream: aiohttp.ClientResponse, timeout_s: float
    ) -> web.StreamResponse:
        out = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "Connection": "keep-alive",
                "Livepeer-Payment-Balance": BALANCE,
            },
        )
        if "X-Metadata" in upstream.headers:
            out.headers["X-Metadata"] = upstream.headers["X-Metadata"]
        await out.prepare(request)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        try:
            async for line in _scan_lines(upstream, deadline):
                if b"[DONE]" in line:
                    await out.write(BALANCE_EVENT)
                    await out.write(line + b"\n")
                    return out
                await out.write(line + b"\n")
            # The worker ended without [DONE]: go-livepeer keeps writing empty lines until its
            # timeout (a receive on a closed channel in its relay loop).
            while loop.time() < deadline:
                await out.write(b"\n")
                await asyncio.sleep(EMPTY_LINE_INTERVAL_S)
        except (ConnectionResetError, asyncio.TimeoutError):
            pass
        return out


async def _scan_lines(upstream: aiohttp.ClientResponse, deadline: float) -> AsyncIterator[bytes]:
    """Lines without their end (``\\n`` or ``\\r\\n``), like ``bufio.Scanner`` with ScanLines.

    Stops quietly at end of body, at the deadline, or at a line of ``SCANNER_MAX_LINE`` bytes.
    """
    loop = asyncio.get_running_loop()
    buffer = b""
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return
        try:
            chunk = await asyncio.wait_for(upstream.content.readany(), remaining)
        except (asyncio.TimeoutError, aiohttp.ClientError, OSError):
            return
        if not chunk:
            if buffer:
                yield buffer.removesuffix(b"\r")
            return
        buffer += chunk
        while (end := buffer.find(b"\n")) >= 0:
            line, buffer = buffer[:end], buffer[end + 1 :]
            if len(line) >= SCANNER_MAX_LINE:
                log.warning("SSE line of %d bytes: relay stopped (bufio.Scanner limit)", len(line))
                return
            yield line.removesuffix(b"\r")
        if len(buffer) >= SCANNER_MAX_LINE:
            log.warning(
                "SSE line over %d bytes: relay stopped (bufio.Scanner limit)", SCANNER_MAX_LINE
            )
            return
