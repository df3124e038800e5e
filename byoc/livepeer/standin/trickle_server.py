"""Trickle HTTP server with go-livepeer's semantics, mountable into any aiohttp application.

Routes under a prefix (default ``/ai/trickle/``):

- ``POST {ch}``: create (only when autocreate is on, as go-livepeer; 200 if it exists), content
  type from ``Expect-Content``;
- ``POST {ch}/{seq}``: publish one segment (``seq`` -1 = the server's next write);
- ``GET {ch}/{seq}``: stream one segment live (-1 = next, -2 = current);
- ``GET {ch}/next``: the next seq to be written;
- ``DELETE {ch}``: close and remove the channel; ``DELETE {ch}/{seq}``: close one segment.

Errors are plain text, as go-livepeer's ``http.Error`` writes them; applications that mount these
routes must leave them out of their own error format (see :meth:`TrickleServer.is_trickle_path`).

Choices where go-livepeer has none or crashes: seqs below -2 (or below -1 on POST) get 400; a
segment reaching ``max_segment_bytes`` is cut there (readers get exactly that many bytes) and the
POST gets 413; a publisher that disconnects mid-segment closes it (readers get the bytes so far, then EOF),
one that disconnects before its first byte leaves it open for a retry; a POST to a seq that
already holds bytes replaces that segment instead of appending to it; when a publisher restarts
from a lower seq, finished segments ahead of it are dropped rather than served again under their
reused seq; waiting readers whose client went away are released within ``disconnect_poll``
seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as ssl_module

from aiohttp import web

from byoc.livepeer.standin.trickle_channel import Channel, Segment
from byoc.livepeer.trickle.constants import (
    CLOSED_VALUE,
    CONTENT_TYPE_OCTET,
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_MAX_SEGMENT_BYTES,
    DEFAULT_PREFIX,
    DEFAULT_SWEEP_INTERVAL_S,
    ENTRY_NOT_FOUND,
    ERR_INVALID_IDX,
    ERR_INVALID_STREAM,
    ERR_NONEXISTENT_SEGMENT,
    ERR_SEGMENT_TOO_LARGE,
    ERR_SERVER_ERROR,
    ERR_STREAM_NOT_FOUND,
    HEADER_CLOSED,
    HEADER_EXPECT_CONTENT,
    HEADER_LATEST,
    HEADER_RESET,
    HEADER_SEQ,
    INTERNAL_CHANNEL_PREFIX,
    NEXT_PATH,
    RING_SIZE,
    SEQ_CURRENT,
    SEQ_NEXT,
    STATUS_SEQ_UNAVAILABLE,
)

log = logging.getLogger(__name__)

_TEXT = "text/plain; charset=utf-8"


class _WriterStopped(asyncio.TimeoutError):
    """Raised into a POST body reader when its segment closes or another writer takes over.

    A TimeoutError so that aiohttp, which after the handler drains ("lingers" on) an unread
    request body and tolerates only timeouts there, simply closes the connection.
    """


def normalize_prefix(prefix: str) -> str:
    """``ai/trickle`` -> ``/ai/trickle/``."""
    return "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"


def _parse_seq(raw: str) -> int | None:
    try:
        return int(raw)
    except ValueError:
        return None


def _error(status: int, message: str, *, close: bool = False) -> web.Response:
    """A go-livepeer style plain-text error (``http.Error``: message plus newline)."""
    resp = web.Response(
        status=status,
        text=message + "\n",
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )
    if close:
        resp.force_close()
    return resp


class TrickleServer:
    """Hosts trickle channels over HTTP and offers the in-process API of a local orchestrator."""

    def __init__(
        self,
        *,
        prefix: str = DEFAULT_PREFIX,
        autocreate: bool = False,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT_S,
        sweep_interval: float = DEFAULT_SWEEP_INTERVAL_S,
        max_segment_bytes: int = DEFAULT_MAX_SEGMENT_BYTES,
        ring_size: int = RING_SIZE,
        disconnect_poll: float = 1.0,
    ) -> None:
        self.prefix = normalize_prefix(prefix)
        self.autocreate = autocreate
        self.idle_timeout = idle_timeout
        self.sweep_interval = sweep_interval
        self.max_segment_bytes = max_segment_bytes
        self.ring_size = ring_size
        self.disconnect_poll = disconnect_poll
        self._channels: dict[str, Channel] = {}
        self._prefixes: set[str] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self.base_url: str | None = None  # set by start(): scheme://host:port/prefix/

    # ---- in-process API (the local orchestrator's side) ----------------------------------------

    def create_channel(self, name: str, content_type: str = CONTENT_TYPE_OCTET) -> Channel:
        """Create channel ``name`` (or return the existing one, keeping its content type)."""
        if not name or "/" in name:
            raise ValueError(f"invalid trickle channel name {name!r}")
        channel = self._channels.get(name)
        if channel is None:
            channel = Channel(name, content_type, ring_size=self.ring_size)
            self._channels[name] = channel
            log.info("trickle channel %s created (%s)", name, content_type or "no content type")
        return channel

    def close_channel(self, name: str) -> bool:
        """Close and remove a channel; every waiter gets end of stream. False if unknown."""
        channel = self._channels.pop(name, None)
        if channel is None:
            return False
        channel.close()
        return True

    def publish_local(self, name: str, data: bytes) -> bool:
        """Write ``data`` as the channel's next segment from inside the server process, as
        go-livepeer's local publisher does. False when the channel does not exist (any more)."""
        channel = self._channels.get(name)
        if channel is None or channel.closed:
            return False
        segment = channel.segment_for_write(SEQ_NEXT)
        channel.note_first_byte(segment)
        segment.append(data)
        segment.close()
        return True

    def channel(self, name: str) -> Channel | None:
        return self._channels.get(name)

    def channel_names(self) -> list[str]:
        return list(self._channels)

    def channel_url(self, name: str) -> str:
        """Full URL of a channel on the standalone server (after :meth:`start`)."""
        if self.base_url is None:
            raise RuntimeError("trickle server not started")
        return self.base_url + name

    def is_trickle_path(self, path: str) -> bool:
        """True for request paths served by these routes (exempt from JSON error bodies)."""
        return any(path.startswith(p) for p in (self._prefixes or {self.prefix}))

    def sweep_idle(self) -> list[str]:
        """Close channels idle for longer than ``idle_timeout`` (``_``-names exempt)."""
        swept = [
            name
            for name, ch in self._channels.items()
            if not name.startswith(INTERNAL_CHANNEL_PREFIX) and ch.idle_for() > self.idle_timeout
        ]
        for name in swept:
            self.close_channel(name)
            log.info("trickle channel %s swept after %.0f s idle", name, self.idle_timeout)
        return swept

    # ---- mounting and standalone serving --------------------------------------------------------

    def add_routes(self, app: web.Application, prefix: str | None = None) -> None:
        """Mount the trickle routes into ``app`` (under ``prefix``, default ``self.prefix``).

        The idle sweeper runs while ``app`` runs; on cleanup every channel is closed.
        """
        p = normalize_prefix(prefix) if prefix is not None else self.prefix
        self._prefixes.add(p)
        router = app.router
        router.add_route("POST", p + "{channel}", self._handle_create)
        router.add_route("DELETE", p + "{channel}", self._handle_delete)
        router.add_route("GET", p + "{channel}/{seq}", self._handle_get)
        router.add_route("POST", p + "{channel}/{seq}", self._handle_post)
        router.add_route("DELETE", p + "{channel}/{seq}", self._handle_delete_seq)
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)

    async def start(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl: ssl_module.SSLContext | None = None,
    ) -> str:
        """Serve on ``host:port`` (0 = ephemeral) over HTTP, or HTTPS with ``ssl``.

        Returns the base URL of the channels, e.g. ``http://127.0.0.1:41234/ai/trickle/``.
        """
        if self._runner is not None:
            raise RuntimeError("trickle server already started")
        app = web.Application()
        self.add_routes(app)
        # handler_cancellation: a GET waiting for data ends as soon as its client goes away.
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port, ssl_context=ssl)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_port = runner.addresses[0][1]
        shown_host = f"[{host}]" if ":" in host else host
        scheme = "https" if ssl is not None else "http"
        self.base_url = f"{scheme}://{shown_host}:{bound_port}{self.prefix}"
        log.info("trickle server listening on %s", self.base_url)
        return self.base_url

    async def close(self) -> None:
        """Close every channel (waiters get end of stream), stop the sweeper and the listener."""
        self._close_all()
        await self._stop_sweeper()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            log.info("trickle server %s stopped", self.base_url)

    async def __aenter__(self) -> TrickleServer:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _on_startup(self, _app: web.Application) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_loop(), name="trickle-sweeper")

    async def _on_cleanup(self, _app: web.Application) -> None:
        self._close_all()
        await self._stop_sweeper()

    def _close_all(self) -> None:
        for name in list(self._channels):
            self.close_channel(name)

    async def _stop_sweeper(self) -> None:
        task, self._sweeper = self._sweeper, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            self.sweep_idle()

    # ---- handlers -------------------------------------------------------------------------------

    async def _handle_create(self, request: web.Request) -> web.Response:
        name = request.match_info["channel"]
        if name not in self._channels and self.autocreate:
            self.create_channel(name, request.headers.get(HEADER_EXPECT_CONTENT, ""))
        if name not in self._channels:
            return _error(404, ERR_STREAM_NOT_FOUND)
        return web.Response()

    async def _handle_delete(self, request: web.Request) -> web.Response:
        if not self.close_channel(request.match_info["channel"]):
            return _error(400, ERR_INVALID_STREAM)
        return web.Response()

    async def _handle_delete_seq(self, request: web.Request) -> web.Response:
        channel = self._channels.get(request.match_info["channel"])
        if channel is None:
            return _error(404, ERR_STREAM_NOT_FOUND)
        seq = _parse_seq(request.match_info["seq"])
        if seq is None or seq < 0:
            return _error(400, ERR_INVALID_IDX)
        if not channel.close_segment(seq):
            return _error(400, ERR_NONEXISTENT_SEGMENT)
        log.info("trickle %s/%d closed by DELETE", channel.name, seq)
        return web.Response()

    async def _handle_post(self, request: web.Request) -> web.Response:
        name = request.match_info["channel"]
        channel = self._channels.get(name)
        if channel is None and self.autocreate:
            channel = self.create_channel(name, request.headers.get("Content-Type", ""))
        if channel is None:
            return _error(404, ERR_STREAM_NOT_FOUND, close=True)  # also wakes a preconnect
        seq = _parse_seq(request.match_info["seq"])
        if seq is None or seq < SEQ_NEXT:
            return _error(400, ERR_INVALID_IDX)
        length = request.content_length
        if length is not None and length > self.max_segment_bytes:
            return _error(413, ERR_SEGMENT_TOO_LARGE, close=True)

        segment = channel.segment_for_write(seq)
        if request.headers.get(HEADER_RESET):
            n = channel.reset_before(segment.seq)
            log.info("trickle %s/%d reset: closed %d older segments", name, segment.seq, n)
        body = request.content

        def stop_writer() -> None:
            body.set_exception(_WriterStopped())

        segment.attach_writer(stop_writer)
        total = 0
        try:
            while True:
                chunk = await body.readany()
                if not chunk:
                    break
                if total == 0:
                    channel.note_first_byte(segment)
                if total + len(chunk) > self.max_segment_bytes:
                    segment.append(chunk[: self.max_segment_bytes - total])
                    segment.detach_writer(stop_writer)  # let aiohttp drain the rest quietly
                    segment.close()
                    log.warning(
                        "trickle %s/%d over %d bytes: truncated",
                        name,
                        segment.seq,
                        self.max_segment_bytes,
                    )
                    return _error(413, ERR_SEGMENT_TOO_LARGE, close=True)
                segment.append(chunk)
                total += len(chunk)
        except _WriterStopped:
            # The segment was closed (channel deleted, seq aborted, replaced or evicted) or a
            # retried POST took over this idle one: answer like go-livepeer's closed preconnect.
            return self._post_done(channel, segment, close=True)
        except BaseException as exc:
            # Client gone mid-body (connection reset, broken chunking, or the handler cancelled
            # on disconnect). Readers keep the bytes so far; before the first byte the segment
            # stays open for a retried POST.
            if total > 0:
                segment.close()
            log.info(
                "trickle %s/%d publisher went away after %d bytes: %r",
                name,
                segment.seq,
                total,
                exc,
            )
            if not isinstance(exc, Exception):
                raise
            return _error(500, ERR_SERVER_ERROR, close=True)
        finally:
            segment.detach_writer(stop_writer)

        if total == 0:
            channel.note_first_byte(segment)  # an empty segment still advances the write head
        segment.close()
        log.debug("trickle %s/%d published %d bytes", name, segment.seq, total)
        return self._post_done(channel, segment, close=total == 0)

    @staticmethod
    def _post_done(channel: Channel, segment: Segment, *, close: bool) -> web.Response:
        resp = web.Response(headers={HEADER_SEQ: str(segment.seq)})
        if channel.closed:
            resp.headers[HEADER_CLOSED] = CLOSED_VALUE
        if close:
            resp.force_close()
        return resp

    async def _handle_get(self, request: web.Request) -> web.StreamResponse:
        channel = self._channels.get(request.match_info["channel"])
        if channel is None:
            return _error(404, ERR_STREAM_NOT_FOUND)
        raw = request.match_info["seq"]
        if raw == NEXT_PATH:
            return self._next_response(channel)
        requested = _parse_seq(raw)
        if requested is None or requested < SEQ_CURRENT:
            return _error(400, ERR_INVALID_IDX)
        seq = channel.resolve_read_seq(requested)
        latest = channel.next_write
        segment = channel.segment_for_read(seq)
        if segment is None:
            headers = {HEADER_LATEST: str(latest), HEADER_SEQ: str(requested)}
            status = STATUS_SEQ_UNAVAILABLE
            if channel.closed:
                headers[HEADER_CLOSED] = CLOSED_VALUE
                status = 200
            return web.Response(
                status=status, text=ENTRY_NOT_FOUND, content_type="text/plain", headers=headers
            )
        return await self._stream_segment(request, channel, segment, latest)

    @staticmethod
    def _next_response(channel: Channel) -> web.Response:
        value = str(channel.next_write)
        resp = web.Response(text=value, content_type="text/plain", headers={HEADER_LATEST: value})
        if channel.closed:
            resp.headers[HEADER_CLOSED] = CLOSED_VALUE
        return resp

    async def _stream_segment(
        self, request: web.Request, channel: Channel, segment: Segment, latest: int
    ) -> web.StreamResponse:
        """Relay a segment from byte 0 as it grows; headers go out with the first byte."""
        resp: web.StreamResponse | None = None
        offset = 0
        try:
            while True:
                data = segment.read_from(offset)
                if data:
                    if resp is None:
                        resp = web.StreamResponse(
                            headers={
                                HEADER_SEQ: str(segment.seq),
                                "Content-Type": channel.content_type,
                            }
                        )
                        if segment.seq != latest:
                            resp.headers[HEADER_LATEST] = str(latest)
                        await resp.prepare(request)
                    await resp.write(data)
                    offset += len(data)
                elif segment.closed:
                    break
                else:
                    await segment.wait_beyond(offset, self.disconnect_poll)
                    transport = request.transport
                    if transport is None or transport.is_closing():
                        raise ConnectionResetError("subscriber disconnected")
        except (ConnectionError, RuntimeError) as exc:
            # RuntimeError: aiohttp refuses to write to a closed transport.
            log.info(
                "trickle %s/%d subscriber went away after %d bytes: %r",
                channel.name,
                segment.seq,
                offset,
                exc,
            )
            if resp is None:
                resp = web.Response(status=499)
            return resp
        if resp is None:  # empty segment: the end-of-stream signal when the channel closed
            headers = {HEADER_SEQ: str(segment.seq), HEADER_LATEST: str(channel.next_write)}
            if channel.closed:
                headers[HEADER_CLOSED] = CLOSED_VALUE
            return web.Response(headers=headers)
        await resp.write_eof()
        return resp
