"""One egress stream: processed frames from the output ring, encoded and sent out.

``EgressStream`` maps the ring the parent created and takes the reader role. Each frame is read
as a zero-copy view, copied once into an ``av.VideoFrame`` (an ``rgb24`` ring's frame is
converted to ``yuv420p`` by swscale instead, the same single pass; PyAV encodes only its own
frames; the view is released right after, so infer can reuse the slot during the encode) and encoded
with its own pts, in the event loop: at 512x512 that is 1-3 ms, well under a frame interval.

Outputs: live MPEG-TS segments published to ``publish_url`` (``LiveSegmenter`` +
``SegmentPublisher``), an MP4 file at ``output_path`` (``Mp4Writer``) and/or WHEP viewers
(``StreamViewers``: one encode per codec for all of them, in a thread of the stream's own so the
viewers' peer connections keep being served meanwhile). The input's audio arrives as
``StreamAudio`` messages (``on_audio``) and is muxed by pts.

States sent: ``processing`` at the first frame out; ``ended`` when the publish channel is gone
(404 / ``Lp-Trickle-Closed``); ``completed`` after a frame flagged ``END_OF_STREAM`` (the MP4 is
finished by then); ``failed`` with ``error`` otherwise. ``StreamStats`` every
``stats_interval_s`` and once more at the end (see ``egress.stats``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from byoc.livepeer.trickle import ChannelClosedError
from egress.colour import colour_of, swscale_target, tag_colour
from egress.encode import to_ts_clock
from egress.live import LiveSegmenter
from egress.mp4 import Mp4Writer
from egress.publish import SegmentPublisher
from egress.stats import EgressStats
from egress.whep.viewers import StreamViewers, WhepEncoding
from ipc.colour import Colour
from ipc.deadline import within
from ipc.frame import Frame, FrameFlag, Stage
from ipc.messages import (
    DropReason,
    EgressConfig,
    StreamAudio,
    StreamPartState,
    StreamState,
    StreamStats,
)
from ipc.pixfmt import PixelFormat
from ipc.ring import FrameRing, RingReader
from ipc.worker_stream import Send, WorkerStream

log = logging.getLogger(__name__)

MP4_AUDIO_GRACE_S = 0.5
"""How long the first picture of an MP4 output waits for audio to show up: an MP4's tracks are
fixed when the file starts (a live output adds its audio track later if it must)."""
IDLE_POLL_S = 0.1
"""How often held audio is looked at while no picture comes."""
CLOSE_TIMEOUT_S = 5.0


def video_frame_of(frame: Frame, reformatter: VideoReformatter | None = None) -> av.VideoFrame:
    """A ``yuv420p`` (or ``nv12``) ``av.VideoFrame`` of a ring frame, what the encoders take.

    4:2:0 frames are copied once, plane by plane (3-4x faster than
    ``VideoFrame.from_ndarray``); ``rgb24`` frames (inference on the CPU) are converted straight
    from the slot by FFmpeg's swscale (``reformatter``: one per stream keeps its context), written
    with the output's matrix and range. Frames of odd size are trimmed to even: the encoder needs
    even sizes. The picture is tagged with the colour description the ring frame carries,
    resolved for its size (BT.709 for HD, BT.601 below, when the input said nothing)."""
    fmt = frame.pixel_format
    width, height = frame.width - frame.width % 2, frame.height - frame.height % 2
    planes = frame.planes
    colour = Colour.from_flags(frame.flags).resolved(height)
    if fmt == PixelFormat.RGB24:
        return yuv420p_of_rgb(planes[0][:height, :width], colour, reformatter)
    if (width, height) != (frame.width, frame.height):
        chroma = (p[: height // 2, : width // 2] for p in planes[1:])
        planes = (planes[0][:height, :width], *chroma)
    out = av.VideoFrame(width, height, fmt.ffmpeg_name)
    for source, plane in zip(planes, out.planes, strict=True):
        rows = source.reshape(source.shape[0], -1)
        target = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)
        np.copyto(target[: rows.shape[0], : rows.shape[1]], rows, casting="no")
    tag_colour(out, colour)
    return out


def yuv420p_of_rgb(
    rgb: np.ndarray, colour: Colour, reformatter: VideoReformatter | None = None
) -> av.VideoFrame:
    """``rgb`` (``(h, w, 3)`` uint8, even sides, rows of any stride: a slot view) converted to a
    new ``yuv420p`` picture with ``colour``'s matrix and range, and tagged with it. The array is
    only read during the call."""
    source = av.VideoFrame.from_numpy_buffer(rgb, format="rgb24")
    out = (reformatter or VideoReformatter()).reformat(
        source, format="yuv420p", threads=1, **swscale_target(colour)
    )
    tag_colour(out, colour)
    return out


def video_frame_of_copy(picture: av.VideoFrame) -> av.VideoFrame:
    """A copy of ``picture`` (the encoders of other outputs may hold the original)."""
    out = av.VideoFrame(picture.width, picture.height, picture.format.name)
    for source, plane in zip(picture.planes, out.planes, strict=True):
        memoryview(plane)[:] = memoryview(source)
    tag_colour(out, colour_of(picture))
    return out


class EgressStream(WorkerStream):
    """The egress worker's part of one stream (see the module docstring)."""

    role = "egress"

    def __init__(
        self,
        stream_id: str,
        config: EgressConfig,
        send: Send,
        *,
        on_done: Callable[[EgressStream], None] | None = None,
    ) -> None:
        if not config.publish_url and not config.output_path and not config.whep:
            raise ValueError("an egress stream needs publish_url, output_path or whep")
        super().__init__(stream_id, send, stats_interval_s=config.stats_interval_s, on_done=on_done)
        self.config = config
        self.stats = EgressStats(stream_id)
        self.live = (
            LiveSegmenter(
                segment_seconds=config.segment_seconds,
                audio=config.audio,
                preset=config.preset,
                crf=config.crf,
                bit_rate=config.bit_rate,
                label=stream_id,
            )
            if config.publish_url
            else None
        )
        self.mp4 = (
            Mp4Writer(
                config.output_path,
                audio=config.audio,
                preset=config.preset,
                crf=config.crf,
                bit_rate=config.bit_rate,
                label=stream_id,
            )
            if config.output_path
            else None
        )
        self.viewers = (
            StreamViewers(
                stream_id,
                send,
                WhepEncoding(
                    preset=config.preset,
                    bit_rate=config.whep_bit_rate,
                    keyframe_min_interval_s=config.whep_keyframe_min_interval_s,
                    max_size=(config.ring.max_width, config.ring.max_height),
                ),
            )
            if config.whep
            else None
        )
        self.publisher: SegmentPublisher | None = None
        self._ring: FrameRing | None = None
        self._reader: RingReader | None = None
        self._audio_arrived = asyncio.Event()
        self._ring_dropped = 0
        self._reformatter = VideoReformatter()
        self._published: SegmentPublisher | None = None  # kept for its byte count once closed

    def open(self) -> None:
        """Map the ring, take the reader role and open the outputs."""
        ring = FrameRing.attach(self.config.ring)
        try:
            reader = ring.reader()
        except BaseException:
            ring.close()
            raise
        self._ring, self._reader = ring, reader
        if self.config.publish_url:
            self.publisher = SegmentPublisher(
                self.config.publish_url, verify_tls=self.config.verify_tls, label=self.stream_id
            )
            self._published = self.publisher
        log.info(
            "stream %s: egress started from ring %s to %s",
            self.stream_id,
            ring.name,
            " and ".join(
                x
                for x in (
                    self.config.publish_url,
                    self.config.output_path,
                    "WHEP viewers" if self.viewers is not None else "",
                )
                if x
            ),
        )

    def on_audio(self, message: StreamAudio) -> None:
        """An audio packet of the stream's input (relayed by the parent)."""
        if not self.config.audio or not self.running:
            return
        if self.live is not None:
            self.live.audio(message)
        if self.mp4 is not None:
            self.mp4.audio(message)
        if self.viewers is not None:
            self.viewers.audio(message)
        self._audio_arrived.set()

    async def stop(self, *, finish: bool = True) -> None:
        """Stop (idempotent) and send the final ``StreamStats``. ``finish``: end the open segment,
        delete the publish channel and finish the MP4 with what was written; otherwise (the
        stream is being replaced) leave the channel as it is and drop the unfinished MP4."""
        was_running = await self.cancel()
        await self._close_outputs(finish=finish)
        if self.viewers is not None:
            await self.viewers.close()
        await self.send_final_report(was_running)

    # -- the frame loop ---------------------------------------------------------------------

    async def work(self) -> StreamPartState:
        return await self._loop()

    def ended_by(self, exc: Exception) -> StreamPartState | None:
        if isinstance(exc, ChannelClosedError):
            log.info("stream %s: output channel gone (%s)", self.stream_id, exc)
            return "ended"
        return None

    async def finish_outputs(self, state: StreamPartState) -> None:
        if state != "completed":
            await self._close_outputs(finish=state == "failed")
        if self.viewers is not None:
            await self.viewers.close()

    def frames_done(self) -> int:
        return self.stats.frames_out

    async def _loop(self) -> StreamPartState:
        reader = self._reader
        assert reader is not None
        while not await reader.wait_async():
            pass
        if self.mp4 is not None and self.config.audio and not self._audio_arrived.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._audio_arrived.wait(), MP4_AUDIO_GRACE_S)
        while True:
            frame = await reader.read_async(
                copy=False, stamp=Stage.EGRESS_READ, timeout=IDLE_POLL_S
            )
            if frame is None:
                if self.live is not None and self.publisher is not None:
                    await self.publisher.publish(self.live.idle())
                continue
            if await self._frame(frame):
                return await self._complete()

    async def _frame(self, frame: Frame) -> bool:
        """Encode and send one frame; returns whether it ended the stream."""
        self.stats.frame_read()
        if self.viewers is not None:
            self.viewers.pictures.size = (frame.width, frame.height)  # a first viewer's level
        if self.live is None and self.mp4 is None and not self.viewers:
            frame.release()  # WHEP only, and nobody watches: nothing to encode
            return bool(frame.flags & FrameFlag.END_OF_STREAM)
        try:
            picture = video_frame_of(frame, self._reformatter)
        finally:
            frame.release()
        stamps = frame.stamps
        pts = to_ts_clock(frame.pts, frame.time_base)
        accepted = True
        chunks = []
        if self.live is not None:
            chunks = self.live.video(
                picture, pts, discontinuity=bool(frame.flags & FrameFlag.DISCONTINUITY)
            )
            accepted = self.live.accepted
        if self.mp4 is not None:
            written = self.mp4.frames
            self.mp4.video(picture, pts)
            accepted = accepted and self.mp4.frames > written
        if self.viewers:
            # The viewers' encoders run in a thread of their own: they get a picture of their own.
            await self.viewers.publish(
                picture if self.live is None and self.mp4 is None else video_frame_of_copy(picture),
                pts,
            )
        stamps[Stage.ENCODED] = time.monotonic_ns()
        if self.publisher is not None and chunks:
            await self.publisher.publish(chunks)
        stamps[Stage.PUBLISHED] = time.monotonic_ns()
        if accepted:
            self.stats.frame_published(stamps)
            if self.stats.frames_out == 1:
                await self._send(
                    StreamState(stream_id=self.stream_id, worker="egress", state="processing")
                )
        return bool(frame.flags & FrameFlag.END_OF_STREAM)

    async def _complete(self) -> StreamPartState:
        """The last frame went out: finish every output."""
        if self.live is not None and self.publisher is not None:
            publisher, self.publisher = self.publisher, None
            try:
                await publisher.publish(self.live.close())
            finally:
                await publisher.close(delete_channel=False)
        if self.mp4 is not None and not self.mp4.close():
            raise RuntimeError("no frame was written to the MP4")
        log.info("stream %s: output complete", self.stream_id)
        return "completed"

    async def _close_outputs(self, *, finish: bool) -> None:
        if self.publisher is not None:
            publisher, self.publisher = self.publisher, None
            try:
                if finish and self.live is not None and not publisher.closed:
                    await asyncio.wait_for(
                        publisher.publish(self.live.close()), within(CLOSE_TIMEOUT_S)
                    )
            except Exception as exc:  # the channel may be gone already
                log.info("stream %s: final segment not sent (%r)", self.stream_id, exc)
            finally:
                await publisher.close(delete_channel=finish)
        if self.mp4 is not None and not self.mp4.closed:
            if finish:
                try:
                    self.mp4.close()
                except Exception:
                    log.exception("stream %s: MP4 could not be finished", self.stream_id)
                    self.mp4.abort()
            else:
                self.mp4.abort()

    # -- figures ----------------------------------------------------------------------------

    def report(self) -> StreamStats:
        if self._ring is not None and not self._ring.closed:
            self._ring_dropped = self._ring.stats().dropped
        dropped: dict[DropReason, int] = {"ring_overwrite": self._ring_dropped}
        for part in (self.live, self.mp4, self.viewers):
            if part is not None:
                for reason, n in part.dropped().items():
                    dropped[reason] = dropped.get(reason, 0) + n
        bytes_out = self._published.bytes if self._published is not None else 0
        encoders = self.viewers.encoder_stats() if self.viewers is not None else None
        return self.stats.report(dropped, bytes_out=bytes_out, encoders=encoders)

    def release(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._ring is not None:
            self._ring_dropped = self._ring.stats().dropped
            self._ring.close()
            self._ring = None
