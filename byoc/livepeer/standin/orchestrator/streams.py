"""The stand-in's live streams: ``POST /ai/stream/start|update|stop`` as go-livepeer's
orchestrator handles them (``byoc/stream_orchestrator.go``), plus the gateway's control-channel
keepalive, since the stand-in plays both roles.

start: header checked, capability must be registered (else 400), ``parameters`` must be JSON
(its ``enable_video_ingress``/``enable_video_egress``/``enable_data_output`` choose which URLs the
worker gets), body a JSON object (else 400 ``Invalid JSON body``). The five channels ``{id}``,
``{id}-out``, ``{id}-control``, ``{id}-events``, ``{id}-data`` are created on the embedded trickle
server; the worker's ``/stream/start`` gets the orchestrator's object merged with the body (the
body's keys win). A worker status above 399 is relayed (401: 500 and the capability removed),
and an unreachable worker gives 500; either way the channels are closed. Only then is the stream
registered (a duplicate id: 500, channels closed). Success: 200, empty body, ``X-*-Url`` headers.

update: the raw body goes to the worker's ``/stream/params`` (Content-Type forced to JSON,
``X-Stream-Id`` from the header's ``request.stream_id``); status and body relayed.

stop: the raw body goes to the worker's ``/stream/stop`` without a Content-Type; the stream is
removed and its channels closed whatever the worker says; an unreachable worker still gives 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from byoc.livepeer.header import HEADER_NAME
from byoc.livepeer.standin.orchestrator.gohttp import (
    BadJobRequest,
    OrchJobRequest,
    go_error,
    parse_job_header,
)
from byoc.livepeer.standin.orchestrator.jobs import bearer
from byoc.livepeer.standin.orchestrator.registry import ExternalCapability, Registry
from byoc.livepeer.standin.trickle_server import TrickleServer
from byoc.livepeer.trickle import (
    ChannelClosedError,
    JsonSegmentPublisher,
    TrickleError,
    TricklePublisher,
)
from byoc.livepeer.trickle.constants import (
    CONTENT_TYPE_JSON,
    CONTENT_TYPE_JSONL,
    CONTENT_TYPE_MPEGTS,
    KEEPALIVE_MESSAGE,
)
from ipc.untrusted_json import loads_untrusted

log = logging.getLogger(__name__)

CHANNEL_SUFFIXES = {
    "": CONTENT_TYPE_MPEGTS,  # gateway -> worker input
    "-out": CONTENT_TYPE_MPEGTS,  # worker -> gateway output
    "-control": CONTENT_TYPE_JSON,
    "-events": CONTENT_TYPE_JSON,
    "-data": CONTENT_TYPE_JSONL,
}


@dataclass
class OrchStream:
    """One stream the stand-in registered."""

    id: str
    capability: ExternalCapability
    keepalive: asyncio.Task[None] | None = None
    urls: dict[str, str] = field(default_factory=dict)


class StreamRelay:
    """Stream start/update/stop towards workers, channels on the embedded trickle server."""

    def __init__(
        self,
        registry: Registry,
        trickle: TrickleServer,
        http: aiohttp.ClientSession,
        *,
        keepalive_interval_s: float = 10.0,
    ) -> None:
        self.registry = registry
        self.trickle = trickle
        self.http = http
        self.keepalive_interval_s = keepalive_interval_s
        self.trickle_base = ""  # e.g. https://127.0.0.1:8890/ai/trickle/, set when serving
        self.streams: dict[str, OrchStream] = {}

    # --- handlers ----------------------------------------------------------------------------

    async def handle_start(self, request: web.Request) -> web.StreamResponse:
        try:
            job = parse_job_header(request.headers.get(HEADER_NAME))
            parameters = loads_untrusted(job.parameters) if job.parameters else {}
        except BadJobRequest as exc:
            return go_error(400, str(exc))
        except ValueError:
            return go_error(400, "Unable to unmarshal job parameters")
        if not isinstance(parameters, dict):
            return go_error(400, "Unable to unmarshal job parameters")
        capability = self.registry.get(job.capability)
        if capability is None:
            return go_error(400, f"capability {job.capability!r} not registered")
        try:
            body = loads_untrusted(await request.read())
        except ValueError:
            return go_error(400, "Invalid JSON body")
        if not isinstance(body, dict):
            return go_error(400, "Invalid JSON body")

        stream_id = job.id or secrets.token_hex(8)
        for suffix, content_type in CHANNEL_SUFFIXES.items():
            self.trickle.create_channel(stream_id + suffix, content_type)
        base = self.trickle_base
        urls = {
            "control_url": f"{base}{stream_id}-control",
            "events_url": f"{base}{stream_id}-events",
        }
        if parameters.get("enable_video_ingress") is True:
            urls["subscribe_url"] = f"{base}{stream_id}"
        if parameters.get("enable_video_egress") is True:
            urls["publish_url"] = f"{base}{stream_id}-out"
        if parameters.get("enable_data_output") is True:
            urls["data_url"] = f"{base}{stream_id}-data"
        worker_body = {"gateway_request_id": stream_id, **urls, **body}
        headers = {
            "Content-Type": request.headers.get("Content-Type", ""),
            "X-Stream-Id": stream_id,
            **bearer(capability),
        }
        result = await self._call_worker(
            capability, "/stream/start", json.dumps(worker_body).encode(), headers, job
        )
        if result is not None and result.status < 400:
            if stream_id in self.streams:
                self._close_channels(stream_id)
                return go_error(500, f"stream {stream_id} already exists")
            stream = OrchStream(stream_id, capability, urls=urls)
            stream.keepalive = asyncio.create_task(
                self._keepalive(stream), name=f"keepalive-{stream_id}"
            )
            self.streams[stream_id] = stream
            capability.load += 1
            out = web.Response(status=200, headers={"Livepeer-Balance": "0"})
            out.headers["X-Control-Url"] = urls["control_url"]
            out.headers["X-Events-Url"] = urls["events_url"]
            if "subscribe_url" in urls:
                out.headers["X-Publish-Url"] = urls["subscribe_url"]  # where the gateway publishes
            if "publish_url" in urls:
                out.headers["X-Subscribe-Url"] = urls["publish_url"]  # where the gateway reads
            if "data_url" in urls:
                out.headers["X-Data-Url"] = urls["data_url"]
            return out
        self._close_channels(stream_id)
        if result is None:
            return go_error(500, "Orchestrator worker failure: worker unreachable")
        if result.status == 401:
            self.registry.remove(capability.name, "worker answered 401 to /stream/start")
            return go_error(500, "Orchestrator worker failure")
        return go_error(result.status, result.body.decode("utf-8", "replace"))

    async def handle_update(self, request: web.Request) -> web.StreamResponse:
        try:
            job = parse_job_header(request.headers.get(HEADER_NAME))
        except BadJobRequest as exc:
            return go_error(400, str(exc))
        stream = self.streams.get(job.stream_id)
        capability = stream.capability if stream is not None else self.registry.get(job.capability)
        if capability is None:
            return go_error(400, f"capability {job.capability!r} not registered")
        body = await request.read()
        headers = {"Content-Type": "application/json", **bearer(capability)}
        if job.stream_id:
            headers["X-Stream-Id"] = job.stream_id
        result = await self._call_worker(capability, "/stream/params", body, headers, job)
        if result is None:
            return go_error(500, "Orchestrator worker failure: worker unreachable")
        if result.status == 401:
            self.registry.remove(capability.name, "worker answered 401 to /stream/params")
            return go_error(500, "Orchestrator worker failure")
        return _relay(result)

    async def handle_stop(self, request: web.Request) -> web.StreamResponse:
        try:
            job = parse_job_header(request.headers.get(HEADER_NAME))
        except BadJobRequest as exc:
            return go_error(400, str(exc))
        stream = self.streams.pop(job.stream_id, None)
        capability = stream.capability if stream is not None else self.registry.get(job.capability)
        if capability is None:
            return go_error(400, f"capability {job.capability!r} not registered")
        body = await request.read()
        headers = {"X-Stream-Id": job.stream_id, **bearer(capability)}
        try:
            result = await self._call_worker(
                capability, "/stream/stop", body, headers, job, content_type=None
            )
        finally:
            if stream is not None:
                await self.end_stream(stream)
        if result is None:
            return web.Response(status=200, headers={"Livepeer-Balance": "0"})
        if result.status == 401:
            self.registry.remove(capability.name, "worker answered 401 to /stream/stop")
            return go_error(500, "Orchestrator worker failure")
        return _relay(result)

    # --- helpers -----------------------------------------------------------------------------

    async def end_stream(self, stream: OrchStream) -> None:
        """Stop the keepalive, close the channels, release the load slot."""
        self.streams.pop(stream.id, None)
        if stream.keepalive is not None:
            stream.keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stream.keepalive
        self._close_channels(stream.id)
        if self.registry.get(stream.capability.name) is stream.capability:
            self.registry.release(stream.capability)

    async def close(self) -> None:
        for stream in list(self.streams.values()):
            await self.end_stream(stream)

    def _close_channels(self, stream_id: str) -> None:
        for suffix in CHANNEL_SUFFIXES:
            self.trickle.close_channel(stream_id + suffix)

    async def _call_worker(
        self,
        capability: ExternalCapability,
        path: str,
        body: bytes,
        headers: dict[str, str],
        job: OrchJobRequest,
        *,
        content_type: str | None = "keep",
    ) -> _WorkerAnswer | None:
        """POST to the worker; None when it cannot be reached or does not answer in time."""
        skip = ["Content-Type"] if content_type is None else []

        async def post() -> _WorkerAnswer:
            async with self.http.post(
                capability.url + path, data=body, headers=headers, ssl=False, skip_auto_headers=skip
            ) as response:
                data = await response.read()
                return _WorkerAnswer(
                    response.status, data, response.headers.get("Content-Type", "")
                )

        try:
            return await asyncio.wait_for(post(), job.timeout_seconds)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            log.warning("worker %s%s: %r", capability.url, path, exc)
            return None

    async def _keepalive(self, stream: OrchStream) -> None:
        """The gateway's ``{"keep":"alive"}`` on the control channel, every interval."""
        publisher = JsonSegmentPublisher(
            TricklePublisher(
                stream.urls["control_url"],
                CONTENT_TYPE_JSON,
                session=self.http,
                verify_tls=False,
                delete_on_close=False,
            )
        )
        try:
            while True:
                await publisher.send(KEEPALIVE_MESSAGE)
                await asyncio.sleep(self.keepalive_interval_s)
        except (ChannelClosedError, TrickleError) as exc:
            log.info("stream %s: control keepalive stopped: %s", stream.id, exc)
        finally:
            with contextlib.suppress(Exception):
                await publisher.close()


@dataclass(frozen=True)
class _WorkerAnswer:
    status: int
    body: bytes
    content_type: str


def _relay(answer: _WorkerAnswer) -> web.Response:
    if answer.status > 399:
        return go_error(answer.status, answer.body.decode("utf-8", "replace"))
    headers = {"Livepeer-Balance": "0"}
    if answer.content_type:
        headers["Content-Type"] = answer.content_type
    return web.Response(status=answer.status, body=answer.body, headers=headers)
