"""Trickle subscriber: follows a channel segment by segment, each streamed as it arrives.

Usage::

    async with TrickleSubscriber(url, verify_tls=False) as sub:
        async for segment in sub:
            async for chunk in segment.chunks():
                ...

It starts at ``start_seq`` (-2 = the segment being written now, from its first byte), follows
``Lp-Trickle-Seq + 1``, jumps to ``Lp-Trickle-Latest`` on 470, treats 404 and
``Lp-Trickle-Closed`` as the end of the stream, and reconnects with backoff on network and
server errors (giving up with :class:`SubscribeError` after ``max_retries`` in a row). The GET for
the next segment is opened as soon as the current one's headers arrive.

A segment whose body breaks off raises :class:`SegmentReadError` from ``chunks()``; the
subscriber then goes on with the next seq (a retry would replay the segment from byte 0).
Asking for the next segment closes the previous one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as ssl_module
from collections.abc import AsyncIterator

import aiohttp

from byoc.livepeer.trickle.constants import (
    HEADER_CLOSED,
    HEADER_LATEST,
    HEADER_SEQ,
    SEQ_CURRENT,
    STATUS_SEQ_UNAVAILABLE,
)
from byoc.livepeer.trickle.errors import SegmentReadError, SegmentTooLargeError, SubscribeError
from byoc.livepeer.trickle.http import SessionHolder, request_ssl, streaming_timeout

log = logging.getLogger(__name__)

_MAX_JUMPS_WITHOUT_PAUSE = 8  # 470 -> Latest -> 470 ... loops this often before backing off
_LONG_WAIT_S = 5.0  # a GET cut after waiting this long is re-issued without counting an error


def _int_header(resp: aiohttp.ClientResponse, name: str) -> int | None:
    value = resp.headers.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


class SubscribedSegment:
    """One segment's response, read as a stream of chunks."""

    def __init__(self, resp: aiohttp.ClientResponse, seq: int, label: str) -> None:
        self._resp = resp
        self.seq = seq
        self.latest = _int_header(resp, HEADER_LATEST)
        self.content_type = resp.headers.get("Content-Type", "")
        self.label = label
        self.bytes_read = 0
        self.complete = False  # the body ended normally
        self._consumed = False

    async def chunks(self) -> AsyncIterator[bytes]:
        """The segment's bytes, as they arrive. Raises :class:`SegmentReadError` if cut off."""
        if self._consumed:
            raise RuntimeError(f"trickle segment {self.label} already read")
        self._consumed = True
        try:
            async for chunk in self._resp.content.iter_any():
                self.bytes_read += len(chunk)
                yield chunk
            self.complete = True
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            raise SegmentReadError(
                f"trickle segment {self.label} broke off after {self.bytes_read} bytes: {exc!r}"
            ) from exc
        finally:
            self.close()

    async def read_all(self, max_bytes: int | None = None) -> bytes:
        """The whole segment. Raises :class:`SegmentTooLargeError` beyond ``max_bytes``."""
        parts: list[bytes] = []
        async for chunk in self.chunks():
            parts.append(chunk)
            if max_bytes is not None and self.bytes_read > max_bytes:
                self.close()
                raise SegmentTooLargeError(
                    f"trickle segment {self.label} larger than {max_bytes} bytes"
                )
        return b"".join(parts)

    def close(self) -> None:
        """Release the response (its connection is dropped if the body was not fully read)."""
        if not self._resp.closed:
            if self.complete:
                self._resp.release()
            else:
                self._resp.close()


class TrickleSubscriber:
    """Reads one trickle channel URL (``.../ai/trickle/{channel}``) segment after segment."""

    def __init__(
        self,
        url: str,
        *,
        start_seq: int = SEQ_CURRENT,
        session: aiohttp.ClientSession | None = None,
        verify_tls: bool = True,
        ssl: ssl_module.SSLContext | bool | None = None,
        max_retries: int = 5,
        retry_backoff: float = 0.25,
        max_backoff: float = 5.0,
        connect_timeout: float = 10.0,
        preconnect: bool = True,
    ) -> None:
        self.url = url.rstrip("/")
        self.name = self.url.rsplit("/", 1)[-1]
        self.seq = start_seq  # the next seq to ask for
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.max_backoff = max_backoff
        self.connect_timeout = connect_timeout
        self.preconnect = preconnect
        self.closed = False  # end of stream reached, or closed by the owner
        self.not_found = False  # the stream ended because the server does not know the channel
        self.jumps = 0  # times a 470 moved us to the server's latest seq
        self.long_wait_s = _LONG_WAIT_S
        self._ssl = request_ssl(verify_tls, ssl)
        self._session = SessionHolder(session)
        self._pending: asyncio.Task[aiohttp.ClientResponse | None] | None = None
        self._pending_seq = start_seq
        self._waiting: asyncio.Task[aiohttp.ClientResponse | None] | None = None
        self._current: SubscribedSegment | None = None

    async def next_segment(self) -> SubscribedSegment | None:
        """The next segment (headers received, body still streaming), or None at end of stream.

        Raises :class:`SubscribeError` when the server stayed unreachable or kept failing.
        """
        if self._current is not None:
            self._current.close()
            self._current = None
        if self.closed:
            return None
        task, self._pending = self._pending, None
        if task is None:
            task = self._open(self.seq)
        self._waiting = task
        try:
            resp = await task
        except asyncio.CancelledError:
            if self.closed and task.cancelled():
                return None  # closed by the owner while we waited
            raise
        except BaseException:
            self.closed = True
            raise
        finally:
            self._waiting = None
        if self.closed:  # closed by the owner while the response arrived
            if resp is not None:
                resp.close()
            return None
        if resp is None:
            self.closed = True
            log.info("trickle sub %s: end of stream", self.name)
            return None
        seq = _int_header(resp, HEADER_SEQ)
        if seq is None or seq < 0:
            seq = max(self._pending_seq, 0)
        self.seq = seq + 1
        if self.preconnect:
            self._pending = self._open(self.seq)
        self._current = SubscribedSegment(resp, seq, f"{self.name}/{seq}")
        return self._current

    def __aiter__(self) -> TrickleSubscriber:
        return self

    async def __anext__(self) -> SubscribedSegment:
        segment = await self.next_segment()
        if segment is None:
            raise StopAsyncIteration
        return segment

    async def close(self) -> None:
        """Drop the open and the preconnected request and close our session."""
        self.closed = True
        if self._current is not None:
            self._current.close()
            self._current = None
        tasks = [t for t in (self._pending, self._waiting) if t is not None]
        self._pending = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                resp = await task
                if resp is not None:
                    resp.close()
        await self._session.close()

    async def __aenter__(self) -> TrickleSubscriber:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- internals ------------------------------------------------------------------------------

    def _open(self, seq: int) -> asyncio.Task[aiohttp.ClientResponse | None]:
        self._pending_seq = seq
        return asyncio.create_task(self._get(seq), name=f"trickle-get-{self.name}-{seq}")

    async def _get(self, seq: int) -> aiohttp.ClientResponse | None:
        """GET ``seq`` until a segment starts (its response) or the stream ends (None)."""
        errors = 0
        jumps = 0
        loop = asyncio.get_running_loop()
        while True:
            url = f"{self.url}/{seq}"
            failure: str
            started = loop.time()
            try:
                resp = await self._session.get().get(
                    url, ssl=self._ssl, timeout=streaming_timeout(self.connect_timeout)
                )
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                if loop.time() - started >= self.long_wait_s and not self.closed:
                    # A long wait for the segment was cut (proxy or server idle limits); not
                    # a sign of a broken server: ask again at once.
                    log.info("trickle sub %s: long wait cut (%r), asking again", url, exc)
                    continue
                failure = repr(exc)
            else:
                status = resp.status
                if status == 200:
                    if HEADER_CLOSED in resp.headers:
                        resp.release()
                        return None
                    self._pending_seq = seq
                    return resp
                if status == 404:
                    resp.release()
                    log.info("trickle sub %s: channel not found", url)
                    self.not_found = True
                    return None
                if status == STATUS_SEQ_UNAVAILABLE:
                    latest = _int_header(resp, HEADER_LATEST)
                    resp.release()
                    if latest is not None and latest != seq:
                        log.info("trickle sub %s unavailable, jumping to %d", url, latest)
                        seq = latest
                        self.jumps += 1
                        jumps += 1
                        if jumps % _MAX_JUMPS_WITHOUT_PAUSE:
                            continue
                        await asyncio.sleep(self.retry_backoff)
                        continue
                    failure = f"HTTP 470 without a usable {HEADER_LATEST}"
                else:
                    body = (await resp.read())[:200].decode("utf-8", "replace").strip()
                    resp.release()
                    failure = f"HTTP {status} {body}"
            errors += 1
            if errors > self.max_retries:
                raise SubscribeError(f"trickle sub {url}: giving up after {failure}")
            delay = min(self.retry_backoff * 2 ** (errors - 1), self.max_backoff)
            log.info("trickle sub %s: %s; retry %d in %.2fs", url, failure, errors, delay)
            await asyncio.sleep(delay)
