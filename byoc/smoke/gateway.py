"""Starting and stopping a live stream the way a go-livepeer gateway does.

Two routes to a runner:

- through an orchestrator (:class:`OrchestratorGateway`): ``POST /ai/stream/start`` with a
  ``Livepeer`` header (offchain form: unsigned, ``"sig": ""``) and ``{"params": ...}``; the
  orchestrator creates the trickle channels and answers their URLs in ``X-*-Url`` headers;
- straight to the runner (:class:`RunnerGateway`): the channels live on a trickle server we host
  ourselves (the local stand-in's server), and we call the runner's ``POST /stream/start`` with
  their URLs, as an orchestrator does, and publish the gateway's control keepalives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from byoc.livepeer.header import HEADER_NAME, encode_header
from byoc.livepeer.standin.trickle_server import TrickleServer
from byoc.livepeer.trickle import (
    ChannelClosedError,
    JsonSegmentPublisher,
    TrickleError,
    TricklePublisher,
)
from byoc.livepeer.trickle.constants import CONTENT_TYPE_JSON, CONTENT_TYPE_MPEGTS

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 20
KEEPALIVE_INTERVAL_S = 10.0
KEEPALIVE_MESSAGE = {"keep": "alive"}
CHANNELS = {"enable_video_ingress": True, "enable_video_egress": True, "enable_data_output": False}


class StreamStartError(RuntimeError):
    """The orchestrator (or the runner behind it) refused the stream."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body.strip()}")
        self.status = status
        self.body = body


@dataclass(frozen=True)
class StreamUrls:
    """The channels of a started stream, as the gateway sees them."""

    stream_id: str
    capability: str
    publish_url: str  # the gateway publishes input video here
    subscribe_url: str  # processed video appears here
    events_url: str
    control_url: str


def gateway_header(capability: str, stream_id: str, timeout_s: int) -> str:
    """The ``Livepeer`` header of a stream call, as an offchain gateway signs (does not sign) it."""
    return encode_header(
        capability=capability,
        timeout_seconds=timeout_s,
        id=stream_id,
        request={"stream_id": stream_id},
        parameters=CHANNELS,
    )


async def start_stream(
    http: aiohttp.ClientSession,
    orchestrator_url: str,
    capability: str,
    stream_id: str,
    params: dict[str, Any],
    *,
    timeout_s: int = START_TIMEOUT_S,
) -> StreamUrls:
    """Start a stream on an orchestrator; raise :class:`StreamStartError` unless it answers 200."""
    async with http.post(
        f"{orchestrator_url.rstrip('/')}/ai/stream/start",
        json={"params": params},
        headers={HEADER_NAME: gateway_header(capability, stream_id, timeout_s)},
        timeout=aiohttp.ClientTimeout(total=timeout_s + 5),
    ) as resp:
        body = await resp.text()
        if resp.status != 200:
            raise StreamStartError(resp.status, body)
        headers = resp.headers
        missing = [
            h
            for h in ("X-Publish-Url", "X-Subscribe-Url", "X-Events-Url", "X-Control-Url")
            if h not in headers
        ]
        if missing:
            raise StreamStartError(resp.status, f"answer lacks {', '.join(missing)}")
        return StreamUrls(
            stream_id=stream_id,
            capability=capability,
            publish_url=headers["X-Publish-Url"],
            subscribe_url=headers["X-Subscribe-Url"],
            events_url=headers["X-Events-Url"],
            control_url=headers["X-Control-Url"],
        )


async def stop_stream(
    http: aiohttp.ClientSession, orchestrator_url: str, capability: str, stream_id: str
) -> int:
    """Stop a stream on an orchestrator (it closes the channels whatever the runner says)."""
    async with http.post(
        f"{orchestrator_url.rstrip('/')}/ai/stream/stop",
        data=b"",
        headers={HEADER_NAME: gateway_header(capability, stream_id, 10)},
        skip_auto_headers=["Content-Type"],
        timeout=aiohttp.ClientTimeout(total=STOP_TIMEOUT_S),
    ) as resp:
        await resp.read()
        return resp.status


class Gateway(Protocol):
    """Starts one stream and stops it again."""

    async def start(self, stream_id: str, params: dict[str, Any]) -> StreamUrls: ...

    async def stop(self) -> None: ...


class OrchestratorGateway:
    """A stream through an orchestrator's BYOC stream API (see the module docstring)."""

    def __init__(self, http: aiohttp.ClientSession, orchestrator_url: str, capability: str) -> None:
        self.http = http
        self.orchestrator_url = orchestrator_url.rstrip("/")
        self.capability = capability
        self._stream_id: str | None = None

    async def start(self, stream_id: str, params: dict[str, Any]) -> StreamUrls:
        urls = await start_stream(
            self.http, self.orchestrator_url, self.capability, stream_id, params
        )
        self._stream_id = stream_id
        return urls

    async def stop(self) -> None:
        stream_id, self._stream_id = self._stream_id, None
        if stream_id is None:
            return
        try:
            status = await stop_stream(self.http, self.orchestrator_url, self.capability, stream_id)
            log.info("stream %s: orchestrator answered stop with %d", stream_id, status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("stream %s: stop failed: %s", stream_id, exc)


class RunnerGateway:
    """A stream straight on a runner, with the channels on our own trickle server."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        runner_url: str,
        *,
        token: str = "",
        bind_host: str = "127.0.0.1",
        advertise_host: str | None = None,
        port: int = 0,
        keepalive_interval_s: float = KEEPALIVE_INTERVAL_S,
    ) -> None:
        self.http = http
        self.runner_url = runner_url.rstrip("/")
        self.token = token
        self.bind_host = bind_host
        self.advertise_host = advertise_host or bind_host
        self.port = port
        self.keepalive_interval_s = keepalive_interval_s
        self.server = TrickleServer()
        self._stream_id: str | None = None
        self._keepalive: asyncio.Task[None] | None = None

    def _headers(self, stream_id: str) -> dict[str, str]:
        headers = {"X-Stream-Id": stream_id}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def _advertised(self, base_url: str) -> str:
        parts = urlsplit(base_url)
        host = f"[{self.advertise_host}]" if ":" in self.advertise_host else self.advertise_host
        return urlunsplit(parts._replace(netloc=f"{host}:{parts.port}"))

    async def start(self, stream_id: str, params: dict[str, Any]) -> StreamUrls:
        base = self._advertised(await self.server.start(self.bind_host, self.port))
        names = {
            "subscribe_url": (stream_id, CONTENT_TYPE_MPEGTS),  # the runner reads input here
            "publish_url": (f"{stream_id}-out", CONTENT_TYPE_MPEGTS),
            "control_url": (f"{stream_id}-control", CONTENT_TYPE_JSON),
            "events_url": (f"{stream_id}-events", CONTENT_TYPE_JSON),
        }
        for name, content_type in names.values():
            self.server.create_channel(name, content_type)
        channel_urls = {key: base + name for key, (name, _) in names.items()}
        body: dict[str, Any] = {"gateway_request_id": stream_id, "params": params, **channel_urls}
        async with self.http.post(
            f"{self.runner_url}/stream/start",
            json=body,
            headers=self._headers(stream_id),
            timeout=aiohttp.ClientTimeout(total=START_TIMEOUT_S),
        ) as resp:
            text = await resp.text()
            if resp.status >= 400:
                raise StreamStartError(resp.status, text)
        self._stream_id = stream_id
        self._keepalive = asyncio.create_task(
            self._send_keepalives(channel_urls["control_url"]), name=f"keepalive-{stream_id}"
        )
        return StreamUrls(
            stream_id=stream_id,
            capability="stream",
            publish_url=channel_urls["subscribe_url"],  # we write what the runner reads
            subscribe_url=channel_urls["publish_url"],
            events_url=channel_urls["events_url"],
            control_url=channel_urls["control_url"],
        )

    async def _send_keepalives(self, control_url: str) -> None:
        publisher = JsonSegmentPublisher(
            TricklePublisher(
                control_url, CONTENT_TYPE_JSON, session=self.http, delete_on_close=False
            )
        )
        try:
            while True:
                await publisher.send(KEEPALIVE_MESSAGE)
                await asyncio.sleep(self.keepalive_interval_s)
        except (ChannelClosedError, TrickleError) as exc:
            log.info("control keepalive stopped: %s", exc)
        finally:
            with contextlib.suppress(Exception):
                await publisher.close()

    async def stop(self) -> None:
        """Stop the stream on the runner (if started), then close every channel and the server."""
        stream_id, self._stream_id = self._stream_id, None
        if self._keepalive is not None:
            self._keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive
            self._keepalive = None
        if stream_id is not None:
            try:
                async with self.http.post(
                    f"{self.runner_url}/stream/stop",
                    data=b"",
                    headers=self._headers(stream_id),
                    skip_auto_headers=["Content-Type"],
                    timeout=aiohttp.ClientTimeout(total=STOP_TIMEOUT_S),
                ) as resp:
                    await resp.read()
                    log.info("stream %s: runner answered stop with %d", stream_id, resp.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("stream %s: stop failed: %s", stream_id, exc)
        await self.server.close()
