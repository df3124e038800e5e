"""JSON over trickle: one document per segment (control, events) and JSON lines (data).

What go-livepeer does, and therefore what we do:

- control and events channels carry exactly one JSON document per segment (the whole body);
  the gateway sends ``{"keep":"alive"}`` on control every 10 s;
- the data channel (``application/jsonl``) is read by the gateway line by line, as bytes arrive,
  each line becoming one SSE message (max 64 KiB a line). Its idle sweep only counts the first
  byte of each segment, so a segment must not stay open for minutes: the JSON lines publisher
  writes one segment per message (or per batch), or in ``stream`` mode keeps a segment open and
  rotates it every ``rotate_after`` seconds. An optional keepalive publishes an empty segment
  (no line, so nothing reaches SSE clients) when nothing was sent for a while.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from byoc.livepeer.trickle.constants import KEEPALIVE_MESSAGE
from byoc.livepeer.trickle.errors import SegmentReadError, SegmentTooLargeError
from byoc.livepeer.trickle.publisher import SegmentWriter, TricklePublisher
from byoc.livepeer.trickle.subscriber import TrickleSubscriber
from ipc.untrusted_json import UntrustedJsonError, loads_untrusted

log = logging.getLogger(__name__)

GATEWAY_MAX_LINE_BYTES = 64 * 1024  # go-livepeer reads data lines with bufio.Scanner's default
DEFAULT_MAX_DOCUMENT_BYTES = 16 * 1024 * 1024


def encode_json(obj: Any) -> bytes:
    """Compact UTF-8 JSON."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def is_keepalive(obj: Any) -> bool:
    """The gateway's control-channel keepalive, ``{"keep":"alive"}``."""
    return obj == KEEPALIVE_MESSAGE


async def publish_json(publisher: TricklePublisher, obj: Any) -> SegmentWriter:
    """Publish ``obj`` as one segment; returns its (closed) writer, e.g. to ``wait()`` on it."""
    async with publisher.segment() as seg:
        await seg.write(encode_json(obj))
    return seg


class JsonSegmentPublisher:
    """One JSON document per segment (control and events channels)."""

    def __init__(self, publisher: TricklePublisher) -> None:
        self.publisher = publisher
        self._lock = asyncio.Lock()

    async def send(self, obj: Any) -> None:
        """Publish ``obj``; concurrent senders are serialised (segments stay whole)."""
        async with self._lock:
            await publish_json(self.publisher, obj)

    async def close(self) -> None:
        await self.publisher.close()


class JsonLinesPublisher:
    """JSON lines for the data channel.

    ``mode="segment"``: every ``send`` (or, with ``flush_interval`` > 0, every batch gathered
    during that interval) becomes one segment of newline-terminated lines.
    ``mode="stream"``: lines go into one open segment as they are sent; the segment is replaced
    by a new one every ``rotate_after`` seconds.
    ``keepalive_interval``: publish an empty segment after that long without any segment.
    """

    def __init__(
        self,
        publisher: TricklePublisher,
        *,
        mode: Literal["segment", "stream"] = "segment",
        flush_interval: float = 0.0,
        rotate_after: float = 30.0,
        keepalive_interval: float | None = None,
    ) -> None:
        self.publisher = publisher
        self.mode = mode
        self.flush_interval = flush_interval
        self.rotate_after = rotate_after
        self.keepalive_interval = keepalive_interval
        self._batch: list[bytes] = []
        self._lock = asyncio.Lock()
        self._open: SegmentWriter | None = None
        self._opened_at = 0.0
        self._last_segment = time.monotonic()
        self._flusher: asyncio.Task[None] | None = None
        self._keepalive: asyncio.Task[None] | None = None
        if keepalive_interval is not None:
            self._keepalive = asyncio.create_task(self._keepalive_loop())

    async def send(self, obj: Any) -> None:
        """Queue (segment mode with batching) or write one line."""
        line = encode_json(obj) + b"\n"
        if len(line) > GATEWAY_MAX_LINE_BYTES:
            log.warning(
                "trickle data %s: %d-byte line exceeds the gateway's %d-byte limit",
                self.publisher.name,
                len(line),
                GATEWAY_MAX_LINE_BYTES,
            )
        if self.mode == "stream":
            async with self._lock:
                seg = await self._stream_segment()
                await seg.write(line)
            return
        self._batch.append(line)
        if self.flush_interval <= 0:
            await self.flush()
        elif self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_later())

    async def flush(self) -> None:
        """Publish the queued lines as one segment now (segment mode)."""
        async with self._lock:
            if not self._batch:
                return
            batch, self._batch = self._batch, []
            async with self.publisher.segment() as seg:
                await seg.write(b"".join(batch))
            self._last_segment = time.monotonic()

    async def close(self) -> None:
        """Flush, end the open segment, stop the background tasks, close the publisher."""
        for task in (self._flusher, self._keepalive):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        with contextlib.suppress(Exception):
            await self.flush()
        if self._open is not None:
            with contextlib.suppress(Exception):
                await self._open.close()
            self._open = None
        await self.publisher.close()

    async def _stream_segment(self) -> SegmentWriter:
        now = time.monotonic()
        if self._open is not None and now - self._opened_at >= self.rotate_after:
            await self._open.close()
            self._open = None
        if self._open is None:
            self._open = await self.publisher.next_segment()
            self._opened_at = now
            self._last_segment = now
        return self._open

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.flush_interval)
        await self.flush()

    async def _keepalive_loop(self) -> None:
        assert self.keepalive_interval is not None
        while True:
            await asyncio.sleep(self.keepalive_interval / 4)
            if self.publisher.closed:
                return
            if time.monotonic() - self._last_segment < self.keepalive_interval:
                continue
            async with self._lock:
                if self.mode == "stream" and self._open is not None:
                    await self._open.close()
                    self._open = None
                async with self.publisher.segment():
                    pass  # an empty segment: advances the channel, reaches no SSE client
                self._last_segment = time.monotonic()


async def read_json_segments(
    subscriber: TrickleSubscriber,
    *,
    skip_keepalive: bool = True,
    max_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
) -> AsyncIterator[Any]:
    """Parsed documents, one per segment, read whole (no truncation), until end of stream.

    Empty segments, documents that are not valid JSON, broken-off and oversized segments are
    logged and skipped; ``{"keep":"alive"}`` is skipped unless ``skip_keepalive`` is False.
    """
    async for segment in subscriber:
        try:
            data = await segment.read_all(max_bytes)
        except (SegmentReadError, SegmentTooLargeError) as exc:
            log.warning("trickle json %s: %s", segment.label, exc)
            continue
        if not data.strip():
            continue
        try:
            obj = loads_untrusted(data, what="segment", max_bytes=max_bytes)
        except UntrustedJsonError as exc:
            log.warning("trickle json %s: not JSON (%s)", segment.label, exc)
            continue
        if skip_keepalive and is_keepalive(obj):
            continue
        yield obj


async def read_json_lines(
    subscriber: TrickleSubscriber,
    *,
    max_line_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
) -> AsyncIterator[Any]:
    """Parsed JSON lines as they arrive, across segments; a segment's end also ends a line."""
    async for segment in subscriber:
        buf = bytearray()
        discarding = False  # inside a line that grew past max_line_bytes
        try:
            async for chunk in segment.chunks():
                buf += chunk
                while (nl := buf.find(b"\n")) >= 0:
                    line = bytes(buf[:nl])
                    del buf[: nl + 1]
                    if discarding or len(line) > max_line_bytes:
                        if not discarding:
                            log.warning(
                                "trickle jsonl %s: line over %d bytes",
                                segment.label,
                                max_line_bytes,
                            )
                        discarding = False
                        continue
                    obj = _parse_line(line, segment.label)
                    if obj is not _SKIP:
                        yield obj
                if len(buf) > max_line_bytes:
                    log.warning(
                        "trickle jsonl %s: line over %d bytes", segment.label, max_line_bytes
                    )
                    buf.clear()
                    discarding = True
        except SegmentReadError as exc:
            log.warning("trickle jsonl %s: %s", segment.label, exc)
            continue
        if not discarding and len(buf) <= max_line_bytes:
            obj = _parse_line(bytes(buf), segment.label)
            if obj is not _SKIP:
                yield obj


_SKIP = object()


def _parse_line(line: bytes, label: str) -> Any:
    line = line.strip()
    if not line:
        return _SKIP
    try:
        return loads_untrusted(line, what="line", max_bytes=len(line))
    except UntrustedJsonError as exc:
        log.warning("trickle jsonl %s: not JSON (%s)", label, exc)
        return _SKIP
