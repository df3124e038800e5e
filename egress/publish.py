"""Mux chunks out to a trickle channel: one trickle segment per MPEG-TS segment, each chunk
written the moment it exists (``first`` opens a segment, ``last`` closes it).

The publisher resumes where the channel stands (``GET next``; the first POST carries
``Lp-Trickle-Reset``), so a stream that was restarted in a new worker continues the channel
instead of rewriting old sequence numbers. A 404 or ``Lp-Trickle-Closed`` raises
``ChannelClosedError`` from :meth:`SegmentPublisher.publish` (the stream ended); repeated failed
segments raise ``PublishError``.
"""

from __future__ import annotations

import logging

from byoc.livepeer.trickle import SegmentWriter, TricklePublisher
from byoc.livepeer.trickle.constants import CONTENT_TYPE_MPEGTS
from egress.mux import MuxChunk

log = logging.getLogger(__name__)


class SegmentPublisher:
    """Publishes one stream's ``MuxChunk``s to ``url``."""

    def __init__(self, url: str, *, verify_tls: bool = False, label: str = "") -> None:
        self.url = url
        self.label = label
        self.segments = 0
        self.bytes = 0
        self.orphan_chunks = 0  # chunks of a segment whose start was never published
        self._publisher = TricklePublisher(
            url, CONTENT_TYPE_MPEGTS, verify_tls=verify_tls, start_seq=None, reset=True
        )
        self._writer: SegmentWriter | None = None

    @property
    def closed(self) -> bool:
        return self._publisher.closed

    async def publish(self, chunks: list[MuxChunk]) -> None:
        """Write ``chunks`` in order (returns once the connection has taken them)."""
        for chunk in chunks:
            if chunk.first:
                if self._writer is not None:  # the muxer never leaves one open; be safe
                    await self._writer.close()
                self._writer = await self._publisher.next_segment()
                self.segments += 1
            writer = self._writer
            if writer is None:
                self.orphan_chunks += 1
                continue
            if chunk.data:
                await writer.write(chunk.data)
                self.bytes += len(chunk.data)
            if chunk.last:
                self._writer = None
                await writer.close()

    async def close(self, *, delete_channel: bool) -> None:
        """End the open segment (if any) and close the publisher; ``delete_channel`` tells
        subscribers the stream is over."""
        writer, self._writer = self._writer, None
        try:
            if writer is not None and not self._publisher.closed:
                await writer.close()
        finally:
            await self._publisher.close(delete_channel=delete_channel)
        log.info(
            "stream %s: publisher closed after %d segments, %d bytes",
            self.label,
            self.segments,
            self.bytes,
        )
