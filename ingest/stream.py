"""One ingest stream: its input (a live trickle channel or a clip file) into its input ring.

``IngestStream`` is the stream in the worker (its life is ``ipc.worker_stream.WorkerStream``'s):
it maps the ring the parent created, takes the writer role, runs the source and releases the ring
(detach only: the parent unlinks it) however the stream ends.

``TrickleSource`` is the live input: it subscribes the channel at the live edge (seq -2: the
segment being written, from its first byte), follows it segment by segment and demuxes each
chunk as it arrives (``feed`` then ``flush_pending``: no frame waits for the next one). The
packets go through a ``PacketPacer`` (a bounded buffer released at the input's cadence, so a
segment that arrives whole is not squeezed into the ring at once) and are then decoded, with the
decoder the video stream's codec needs (H.264 or HEVC). Audio PES payloads are split into ADTS
frames or Opus packets and forwarded undecoded. An input whose program has no video stream we
can decode fails the stream at the end of its first segment, naming what arrived. 404 or
``Lp-Trickle-Closed`` ends the stream (``ended``); network failures are retried by the
subscriber and then by a new subscription, for up to ``give_up_after_s`` without any segment,
after which the stream fails. A subscription that delivers nothing for ``stall_timeout_s`` is
replaced too (a connection can hang without ever failing).

A new subscription of a stream that already delivered frames (a resubscription, or a stream
resumed in a new worker: its ring already holds frames) starts at seq -1, the next segment:
-2 would replay the current segment from its start, i.e. frames the ring already carried, with
timestamps going back. The cost is a gap of less than one segment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from byoc.livepeer.trickle import SegmentReadError, SubscribeError, TrickleSubscriber
from byoc.livepeer.trickle.constants import SEQ_CURRENT, SEQ_NEXT
from byoc.livepeer.trickle.subscriber import SubscribedSegment
from ingest.clip import ClipSource
from ingest.decode import Timeline, VideoDecoder, split_adts, split_ts_opus
from ingest.decoded import DecodedVideo
from ingest.pacing import DEFAULT_BUFFER_S, Marker, PacketPacer
from ingest.ring_sink import RingSink, Send
from ingest.stats import IngestStats
from ingest.tsdemux import SUPPORTED_DESCRIPTION, EsPacket, TsDemuxer
from ingest.webrtc.whip import WhipSource
from ipc.messages import DropReason, IngestConfig, StreamPartState, StreamStats
from ipc.ring import FrameRing, RingWriter
from ipc.worker_stream import WorkerStream

log = logging.getLogger(__name__)

RESUBSCRIBE_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)


def adts_channels(frame: bytes) -> int:
    """Channel count from an ADTS header (channel configuration 0 reads as stereo)."""
    config = ((frame[2] & 0x01) << 2) | (frame[3] >> 6)
    return config if config else 2


class UnsupportedInputError(Exception):
    """The input carries nothing the runner can decode (no video, or an unknown codec)."""


def unsupported_input(program: list[str]) -> UnsupportedInputError:
    """The error for an input whose program (see ``TsDemuxer.program``) has no usable video."""
    arrived = ", ".join(program) if program else "no streams"
    return UnsupportedInputError(
        f"input has no supported video stream: it carries {arrived}; "
        f"supported: {SUPPORTED_DESCRIPTION}"
    )


class TrickleSource:
    """A live MPEG-TS trickle channel, decoded frame by frame into a :class:`RingSink`."""

    def __init__(
        self,
        stream_id: str,
        url: str,
        *,
        verify_tls: bool = False,
        audio: bool = True,
        start_seq: int = SEQ_CURRENT,
        give_up_after_s: float = 60.0,
        subscriber_retries: int = 5,
        stall_timeout_s: float = 15.0,
        pacing_buffer_s: float = DEFAULT_BUFFER_S,
    ) -> None:
        self.stream_id = stream_id
        self.url = url
        self.verify_tls = verify_tls
        self.audio = audio
        self.start_seq = start_seq
        self.give_up_after_s = give_up_after_s
        self.subscriber_retries = subscriber_retries
        self.stall_timeout_s = stall_timeout_s
        self.demuxer = TsDemuxer(label=stream_id)
        self.timeline = Timeline()
        self.video = VideoDecoder(pixel_format=None, label=stream_id)
        self.pacing_buffer_s = pacing_buffer_s
        self.pacer = PacketPacer(pacing_buffer_s)
        self._decoding: asyncio.Task[None] | None = None
        self._audio_on = audio
        self._retired_counts = {"decode_error": 0, "skipped_until_keyframe": 0}
        self.segments = 0
        self.bytes_in = 0
        self.read_errors = 0
        self.resubscribes = 0
        self.jumps = 0
        self._stalled = False
        self._last_activity = 0.0

    def counters(self) -> dict[DropReason, int]:
        """Drop counters of the demuxer and decoder (totals)."""
        return {
            "decode_error": self.video.stats.errors + self._retired_counts["decode_error"],
            "skipped_until_keyframe": self.video.stats.skipped_before_keyframe
            + self._retired_counts["skipped_until_keyframe"],
            "damaged_input": self.demuxer.stats.video_dropped,
            "pacing_catch_up": self.pacer.stats.catch_ups,
        }

    async def run(self, sink: RingSink) -> StreamPartState:
        """Read the channel until it ends; returns ``"ended"``. Raises when it stays
        unreachable for ``give_up_after_s``, or ``UnsupportedInputError``."""
        self.pacer = PacketPacer(self.pacing_buffer_s)
        self._audio_on = self.audio and sink.audio_enabled
        decoding = asyncio.create_task(self._decode_paced(sink), name=f"pace-{self.stream_id}")
        self._decoding = decoding
        try:
            outcome = await self._read(sink)
            self.pacer.close()
            await decoding  # what the buffer holds is real input: decode it before ending
            # Pictures the decoder still holds for B-frame reordering are real input too.
            for decoded in self.video.flush():
                await self._to_sink(decoded, sink)
            return outcome
        finally:
            if not decoding.done():
                decoding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await decoding

    async def _read(self, sink: RingSink) -> StreamPartState:
        start_seq = self.start_seq
        failing_since: float | None = None
        attempt = 0
        while True:
            subscriber = TrickleSubscriber(
                self.url,
                start_seq=start_seq,
                verify_tls=self.verify_tls,
                max_retries=self.subscriber_retries,
            )
            self._stalled = False
            self._last_activity = time.monotonic()
            watchdog = asyncio.create_task(self._watch(subscriber))
            try:
                async with subscriber:
                    async for segment in subscriber:
                        failing_since, attempt = None, 0
                        self._last_activity = time.monotonic()
                        if subscriber.jumps != self.jumps:
                            self.jumps = subscriber.jumps
                            self.pacer.put(sink.mark_discontinuity)
                        await self._segment(segment)
                if not self._stalled:
                    log.info("stream %s: input channel ended", self.stream_id)
                    return "ended"
                log.warning(
                    "stream %s: no input for %.0fs; subscribing again",
                    self.stream_id,
                    self.stall_timeout_s,
                )
            except SubscribeError as exc:
                now = time.monotonic()
                failing_since = failing_since if failing_since is not None else now
                if now - failing_since >= self.give_up_after_s:
                    raise
                delay = RESUBSCRIBE_BACKOFF_S[min(attempt, len(RESUBSCRIBE_BACKOFF_S) - 1)]
                attempt += 1
                log.warning(
                    "stream %s: input unreachable (%s); subscribing again in %.1fs",
                    self.stream_id,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
            finally:
                watchdog.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watchdog
            self.resubscribes += 1
            start_seq = SEQ_NEXT if sink.frames or len(self.pacer) else self.start_seq
            self.pacer.put(lambda: self.video.request_keyframe())
            self.pacer.put(sink.mark_discontinuity)

    async def _watch(self, subscriber: TrickleSubscriber) -> None:
        """Drop a subscription that delivers nothing for ``stall_timeout_s`` (a connection that
        hangs without an error never ends by itself; a live input sends a segment every few
        seconds, and an idle one costs only a new request)."""
        while True:
            await asyncio.sleep(self.stall_timeout_s / 4)
            if time.monotonic() - self._last_activity >= self.stall_timeout_s:
                self._stalled = True
                await subscriber.close()
                return

    async def _segment(self, segment: SubscribedSegment) -> None:
        self.segments += 1
        self._queue(self.demuxer.new_segment())
        try:
            async for chunk in segment.chunks():
                # iter_any() hands over everything buffered: after a chunk the reader is idle.
                self._last_activity = time.monotonic()
                self.bytes_in += len(chunk)
                self._queue(self.demuxer.feed(chunk))
                self._queue(self.demuxer.flush_pending())
                await asyncio.sleep(0)  # let the decoding task take what is due
        except SegmentReadError as exc:
            self.read_errors += 1
            log.warning("stream %s: %s", self.stream_id, exc)
        # The segment is over: whatever it left open is complete (or cut, and dropped).
        self._queue(self.demuxer.new_segment())
        program = self.demuxer.program
        if program is not None and self.demuxer.video is None:
            raise unsupported_input(program)

    def _queue(self, packets: list[EsPacket]) -> None:
        decoding = self._decoding
        if decoding is not None and decoding.done() and not decoding.cancelled():
            error = decoding.exception()
            if error is not None:
                raise error
        for packet in packets:
            if packet.stream.kind == "video" or self._audio_on:
                self.timeline.map(packet)
                self.pacer.put(packet)

    async def _decode_paced(self, sink: RingSink) -> None:
        """Decode what the pacer releases, when it is due."""
        while True:
            item = await self.pacer.get()
            if item is None:
                return
            if isinstance(item, EsPacket):
                await self._packets([item], sink)
            else:
                marker: Marker = item
                marker()

    async def _packets(self, packets: list[EsPacket], sink: RingSink) -> None:
        for packet in packets:
            if packet.stream.kind == "video":
                if packet.stream.codec != self.video.codec:
                    log.info("stream %s: %s video input", self.stream_id, packet.stream.codec)
                    self._retired_counts["decode_error"] += self.video.stats.errors
                    self._retired_counts["skipped_until_keyframe"] += (
                        self.video.stats.skipped_before_keyframe
                    )
                    self.video = VideoDecoder(
                        packet.stream.codec, pixel_format=None, label=self.stream_id
                    )
                for decoded in self.video.decode(packet):
                    await self._to_sink(decoded, sink)
                    await asyncio.sleep(0)  # one frame of codec work at a time on the loop
            elif self._audio_on:
                await self._audio(packet, sink)

    @staticmethod
    async def _to_sink(decoded: DecodedVideo, sink: RingSink) -> None:
        await sink.video(
            decoded.frame,
            pts=decoded.pts,
            keyframe=decoded.keyframe,
            discontinuity=decoded.discontinuity,
            received_ns=decoded.received_ns,
            decoded_ns=decoded.decoded_ns,
        )

    async def _audio(self, packet: EsPacket, sink: RingSink) -> None:
        if packet.pts is None:
            return
        codec = packet.stream.codec
        split = split_adts if codec == "aac" else split_ts_opus
        offset = 0
        for data, rate, samples in split(packet.data):
            pts = packet.pts + (offset * 90_000) // rate
            offset += samples
            if codec == "aac":
                channels = adts_channels(data)
            else:
                channels = packet.stream.channels or (2 if data[0] & 0x04 else 1)
            await sink.audio(codec, pts, data, rate, channels)


class IngestStream(WorkerStream):
    """The ingest worker's part of one stream (see the module docstring)."""

    role = "ingest"

    def __init__(
        self,
        stream_id: str,
        config: IngestConfig,
        send: Send,
        *,
        on_done: Callable[[IngestStream], None] | None = None,
    ) -> None:
        if not config.subscribe_url and not config.source_path and not config.whip:
            raise ValueError("an ingest stream needs subscribe_url, source_path or whip")
        super().__init__(
            stream_id,
            send,
            stats_interval_s=config.stats_interval_s,
            on_done=on_done,
        )
        self.config = config
        self.stats = IngestStats(stream_id)
        self.source: TrickleSource | ClipSource | WhipSource
        if config.whip:
            self.source = WhipSource(
                stream_id,
                idle_timeout_s=config.idle_timeout_s,
                audio=config.audio,
                early_frames=config.early_frames,
            )
        elif config.source_path:
            self.source = ClipSource(stream_id, config.source_path, audio=config.audio)
        else:
            self.source = TrickleSource(
                stream_id,
                config.subscribe_url,
                verify_tls=config.verify_tls,
                audio=config.audio,
                pacing_buffer_s=config.pacing_buffer_s,
            )
        self._ring: FrameRing | None = None
        self._writer: RingWriter | None = None
        self.sink: RingSink | None = None

    def open(self) -> None:
        """Map the ring and take the writer role."""
        ring = FrameRing.attach(self.config.ring)
        try:
            writer = ring.writer()
        except BaseException:
            ring.close()
            raise
        self._ring, self._writer = ring, writer
        self.sink = RingSink(
            self.stream_id, writer, self.stats, self._send, audio=self.config.audio
        )
        if isinstance(self.source, TrickleSource) and writer.next_seq > 1:
            self.source.start_seq = SEQ_NEXT  # resumed: do not replay what the ring carried
        source = self.config.source_path or self.config.subscribe_url or "a WHIP peer"
        log.info(
            "stream %s: ingest started from %s into ring %s (next seq %d)",
            self.stream_id,
            source,
            ring.name,
            writer.next_seq,
        )

    async def stop(self) -> None:
        """Stop reading, send the final ``StreamStats`` and release the ring (idempotent); no
        state message is sent."""
        await self.send_final_report(await self.cancel())

    quiet_failures = (UnsupportedInputError,)

    async def work(self) -> StreamPartState:
        assert self.sink is not None
        return await self.source.run(self.sink)

    def report(self) -> StreamStats:
        bytes_in = self.source.bytes_in if isinstance(self.source, TrickleSource) else 0
        return self.stats.report(self.source.counters(), bytes_in=bytes_in)

    def frames_done(self) -> int:
        return self.stats.frames_in

    def release(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._ring is not None:
            self._ring.close()
            self._ring = None
