"""Trickle publisher: one streamed POST per segment, the next one preconnected.

Usage::

    async with TricklePublisher(url, "video/MP2T", verify_tls=False) as pub:
        async with pub.segment() as seg:
            await seg.write(chunk)  # goes out on the wire right away

Bytes passed to ``write`` are handed to the socket as they are (no copy): do not change a
buffer after writing it.

Failure policy: a POST that fails before any byte of its body was sent is retried (bounded,
with backoff); nothing can be duplicated then. A segment that fails after bytes went out is
dropped and aborted with ``DELETE {ch}/{seq}``, and later writes to it are discarded. A 404 or
``Lp-Trickle-Closed`` closes the publisher: the next ``write`` (or ``segment``) raises
:class:`ChannelClosedError` so the owner ends the stream; so does :class:`PublishError` after
``max_failed_segments`` failed segments in a row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as ssl_module
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from byoc.livepeer.trickle.constants import (
    CLOSED_VALUE,
    HEADER_CLOSED,
    HEADER_RESET,
    HEADER_SEQ,
    NEXT_PATH,
    SEQ_NEXT,
)
from byoc.livepeer.trickle.errors import ChannelClosedError, PublishError, TrickleError
from byoc.livepeer.trickle.http import SessionHolder, request_ssl, streaming_timeout
from ipc.deadline import within

log = logging.getLogger(__name__)

_EOF = None  # queue sentinel: end of the segment body
_MAX_IDLE_BACKOFF_S = 5.0


class _SegmentPost:
    """The POST carrying one segment; its body is fed from a queue as the caller writes."""

    def __init__(self, pub: TricklePublisher, seq: int, *, reset: bool) -> None:
        self.pub = pub
        self.seq = seq  # -1 until the server names it (first segment of a resumed publisher)
        self.reset = reset
        self.queue: asyncio.Queue[Any] = asyncio.Queue(pub.max_queued_chunks)
        self.sent = 0  # body bytes handed to the connection
        self.eof_sent = False
        self.in_use = False  # handed to a SegmentWriter
        self.ended = False  # caller finished (EOF queued) or aborted
        self.finished = False  # the POST is over: answered, failed or cancelled
        self.ok = False
        self.task = asyncio.create_task(self._run(), name=f"trickle-post-{pub.name}-{seq}")

    @property
    def label(self) -> str:
        return f"{self.pub.name}/{self.seq}"

    async def _body(self) -> AsyncIterator[Any]:
        if self.eof_sent:
            return
        while True:
            chunk = await self.queue.get()
            if chunk is _EOF:
                self.eof_sent = True
                return
            self.sent += len(chunk)
            yield chunk

    async def _run(self) -> None:
        pub = self.pub
        attempt = 0
        idle_drops = 0
        try:
            while True:
                headers = {"Content-Type": pub.content_type, "Connection": "close"}
                if self.reset:
                    headers[HEADER_RESET] = "1"
                try:
                    async with pub._session.get().post(
                        f"{pub.url}/{self.seq}",
                        data=self._body(),
                        headers=headers,
                        ssl=pub._ssl,
                        timeout=streaming_timeout(pub.connect_timeout),
                    ) as resp:
                        body = await resp.read()
                        self._on_response(resp, body)
                        return
                except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                    if pub.closed:
                        return
                    if self.sent == 0 and not self.in_use and self.queue.empty():
                        # A preconnect nobody writes to yet lost its connection (server or
                        # network dropped it while idle): reconnect quietly, with backoff.
                        delay = min(pub.retry_backoff * (2**idle_drops), _MAX_IDLE_BACKOFF_S)
                        idle_drops += 1
                        log.debug("trickle pub %s: idle preconnect lost: %r", self.label, exc)
                        await asyncio.sleep(delay)
                        continue
                    if self.sent == 0 and attempt < pub.connect_retries:
                        delay = pub.retry_backoff * (2**attempt)
                        attempt += 1
                        log.info(
                            "trickle pub %s: nothing sent yet, retry %d in %.2fs: %r",
                            self.label,
                            attempt,
                            delay,
                            exc,
                        )
                        await asyncio.sleep(delay)
                        continue
                    log.warning(
                        "trickle pub %s failed after %d bytes: %r", self.label, self.sent, exc
                    )
                    self._on_failure()
                    return
        finally:
            self._finish()

    def _on_response(self, resp: aiohttp.ClientResponse, body: bytes) -> None:
        pub = self.pub
        if resp.status == 404:
            pub._mark_closed(f"channel not found ({self.label})")
            return
        if resp.status != 200:
            text = body.decode("utf-8", "replace").strip()
            log.warning("trickle pub %s: HTTP %d %s", self.label, resp.status, text)
            self._on_failure()
            return
        acked = resp.headers.get(HEADER_SEQ)
        if acked is not None and acked.lstrip("-").isdigit():
            pub._learn_seq(self, int(acked))
        if resp.headers.get(HEADER_CLOSED, "").lower() == CLOSED_VALUE:
            pub._mark_closed(f"channel closed ({self.label})")
        if self.eof_sent:
            self.ok = True
            pub._failed_in_row = 0
        else:
            log.info("trickle pub %s: server ended the segment before we did", self.label)

    def _on_failure(self) -> None:
        pub = self.pub
        pub._failed_in_row += 1
        if self.sent > 0 and self.seq >= 0:
            pub._spawn(pub._delete_seq(self.seq))
        if pub._failed_in_row >= pub.max_failed_segments:
            pub._mark_closed(f"{pub._failed_in_row} segments failed in a row", fatal=True)

    def _finish(self) -> None:
        self.finished = True
        if self.seq == SEQ_NEXT:
            self.pub._seq_known.set()  # never named: the next segment also lets the server pick
        # Unblock a writer waiting for queue space; later writes are discarded.
        while not self.queue.empty():
            self.queue.get_nowait()

    async def put(self, chunk: Any) -> None:
        if not self.finished:
            await self.queue.put(chunk)

    def end_nowait(self) -> None:
        """Queue EOF without waiting; a POST whose queue is full (server not reading) is cut."""
        if self.ended:
            return
        self.ended = True
        try:
            self.queue.put_nowait(_EOF)
        except asyncio.QueueFull:
            self.task.cancel()

    def cancel(self) -> None:
        self.ended = True
        self.task.cancel()


class SegmentWriter:
    """One segment being published. Use as ``async with pub.segment() as seg``."""

    def __init__(self, pub: TricklePublisher) -> None:
        self._pub = pub
        self._post: _SegmentPost | None = None
        self.bytes_written = 0

    @property
    def seq(self) -> int:
        """The segment's seq (-1 until the server names it, for a resumed publisher)."""
        return self._post.seq if self._post is not None else self._pub.seq

    @property
    def failed(self) -> bool:
        """The POST is over without success (data written from now on is discarded)."""
        post = self._post
        return post is not None and post.finished and not post.ok

    async def open(self) -> SegmentWriter:
        if self._post is None:
            self._post = await self._pub._take_post()
        return self

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data`` as part of this segment (as soon as the connection takes it)."""
        pub = self._pub
        pub._raise_if_closed()
        post = self._post or (await self.open())._post
        assert post is not None
        if post.ended:
            raise TrickleError(f"trickle segment {post.label} already closed")
        if not data:
            return
        self.bytes_written += len(data)
        await post.put(data)
        pub._raise_if_closed()

    async def close(self) -> None:
        """End the segment. Does not wait for the server's answer (see :meth:`wait`)."""
        post = self._post or (await self.open())._post
        assert post is not None
        if not post.ended:
            post.ended = True
            await post.put(_EOF)

    async def abort(self) -> None:
        """Drop the segment: stop its POST and ask the server to close it (``DELETE``)."""
        post = self._post
        if post is None or post.finished:
            return
        sent = post.sent
        post.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await post.task
        if sent > 0 and post.seq >= 0:
            await self._pub._delete_seq(post.seq)
        log.info("trickle pub %s aborted after %d bytes", post.label, sent)

    async def wait(self) -> bool:
        """Wait until the server answered the POST; True when it stored the whole segment."""
        post = self._post
        if post is None:
            return False
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(post.task)
        return post.ok

    async def __aenter__(self) -> SegmentWriter:
        return await self.open()

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            await self.close()
        else:
            await self.abort()


class TricklePublisher:
    """Publishes segments to one trickle channel URL (``.../ai/trickle/{channel}``)."""

    def __init__(
        self,
        url: str,
        content_type: str,
        *,
        session: aiohttp.ClientSession | None = None,
        verify_tls: bool = True,
        ssl: ssl_module.SSLContext | bool | None = None,
        start_seq: int | None = 0,
        reset: bool = False,
        delete_on_close: bool = True,
        connect_timeout: float = 10.0,
        connect_retries: int = 3,
        retry_backoff: float = 0.2,
        max_failed_segments: int = 5,
        max_queued_chunks: int = 64,
        max_in_flight: int = 3,
    ) -> None:
        """``start_seq=None`` resumes after a restart: the first segment goes where the server
        says (``GET {ch}/next``, or ``seq=-1`` when the server lacks it); with ``reset`` that
        first POST carries ``Lp-Trickle-Reset`` so readers stuck on our old segment move on."""
        self.url = url.rstrip("/")
        self.name = self.url.rsplit("/", 1)[-1]
        self.content_type = content_type
        self.seq = 0 if start_seq is None else start_seq  # seq of the next segment
        self._resume = start_seq is None
        self.reset = reset
        self.delete_on_close = delete_on_close
        self.connect_timeout = connect_timeout
        self.connect_retries = connect_retries
        self.retry_backoff = retry_backoff
        self.max_failed_segments = max_failed_segments
        self.max_queued_chunks = max_queued_chunks
        self.max_in_flight = max_in_flight
        self.closed = False  # no more segments: closed by us or by the server
        self.close_reason: str | None = None
        self._fatal = False
        self._ssl = request_ssl(verify_tls, ssl)
        self._session = SessionHolder(session)
        self._pending: _SegmentPost | None = None  # preconnected next segment
        self._in_flight: list[_SegmentPost] = []
        self._seq_known = asyncio.Event()
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._failed_in_row = 0
        self._closing = False
        self._seq_known.set()

    def segment(self) -> SegmentWriter:
        """A writer for the next segment (opened by ``async with`` or its first write)."""
        self._raise_if_closed()
        return SegmentWriter(self)

    async def next_segment(self) -> SegmentWriter:
        """Open the next segment's writer now."""
        return await self.segment().open()

    async def close(self, *, delete_channel: bool | None = None) -> None:
        """Finish in-flight segments, drop the preconnect, ``DELETE`` the channel (if
        ``delete_on_close``), close our session. Safe to call twice."""
        if self._closing:
            return
        self._closing = True
        delete = self.delete_on_close if delete_channel is None else delete_channel
        server_closed = self.closed
        self.closed = True
        self.close_reason = self.close_reason or "closed by owner"
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()
        for post in self._in_flight:
            post.end_nowait()
        tasks = [p.task for p in self._in_flight] + ([pending.task] if pending else [])
        # Each wait is cut to what is left of a shutdown's shared deadline (ipc.deadline).
        if tasks:
            _done, late = await asyncio.wait(tasks, timeout=within(5.0))
            for t in late:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if delete and not server_closed:
            await self._delete(self.url, timeout=within(self.connect_timeout))
        if self._tasks:
            _done, late = await asyncio.wait(list(self._tasks), timeout=within(5.0))
            for t in late:
                t.cancel()
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self._session.close()
        log.info("trickle pub %s closed at seq %d", self.name, self.seq)

    async def __aenter__(self) -> TricklePublisher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- internals ------------------------------------------------------------------------------

    async def _take_post(self) -> _SegmentPost:
        async with self._lock:
            self._raise_if_closed()
            if self._resume:
                await self._ask_next_seq()
            self._in_flight = [p for p in self._in_flight if not p.finished]
            while len(self._in_flight) >= self.max_in_flight:
                oldest = self._in_flight.pop(0)
                await asyncio.wait([oldest.task])
            # A segment sent with seq=-1 is still unnamed: wait until its answer names our seq.
            await self._seq_known.wait()
            self._raise_if_closed()
            post, self._pending = self._pending, None
            if post is None or post.finished:
                post = _SegmentPost(self, self.seq, reset=self.reset)
            post.in_use = True
            if post.seq == SEQ_NEXT:
                self._seq_known.clear()
            self.reset = False
            self._in_flight.append(post)
            if self.seq >= 0:
                self.seq += 1
                self._pending = _SegmentPost(self, self.seq, reset=False)  # preconnect
            return post

    async def _ask_next_seq(self) -> None:
        self._resume = False
        try:
            async with self._session.get().get(
                f"{self.url}/{NEXT_PATH}",
                ssl=self._ssl,
                timeout=streaming_timeout(self.connect_timeout),
            ) as resp:
                text = (await resp.text()).strip()
                if resp.status == 404:
                    self._mark_closed(f"channel not found ({self.name})")
                elif resp.status == 200 and text.isdigit():
                    self.seq = int(text)
                    self._seq_known.set()
                    log.info("trickle pub %s resumes at seq %d", self.name, self.seq)
                    return
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            log.info("trickle pub %s: no next seq from server: %r", self.name, exc)
        self.seq = SEQ_NEXT  # let the server place the first segment

    def _learn_seq(self, post: _SegmentPost, acked: int) -> None:
        if post.seq == SEQ_NEXT:
            post.seq = acked
            if self.seq == SEQ_NEXT:
                self.seq = acked + 1
            self._seq_known.set()

    def _mark_closed(self, reason: str, *, fatal: bool = False) -> None:
        if not self.closed:
            log.info("trickle pub %s: %s", self.name, reason)
            self.closed = True
            self.close_reason = reason
            self._fatal = fatal
        self._seq_known.set()
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()

    def _raise_if_closed(self) -> None:
        if self.closed:
            reason = self.close_reason or "closed"
            if self._fatal:
                raise PublishError(f"trickle publisher {self.name}: {reason}")
            raise ChannelClosedError(f"trickle publisher {self.name}: {reason}")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _delete_seq(self, seq: int) -> None:
        await self._delete(f"{self.url}/{seq}")

    async def _delete(self, url: str, timeout: float | None = None) -> None:
        try:
            async with self._session.get().delete(
                url,
                ssl=self._ssl,
                timeout=aiohttp.ClientTimeout(total=timeout or within(self.connect_timeout)),
            ) as resp:
                await resp.read()
                if resp.status == 404:
                    self._mark_closed(f"channel not found ({self.name})")
                log.debug("trickle pub DELETE %s -> %d", url, resp.status)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            log.info("trickle pub DELETE %s failed: %r", url, exc)
