"""Where every ingest source delivers: decoded pictures into the stream's input ring, audio
packets to the parent.

A picture is copied once, from the decoder's planes straight into a reserved ring slot (no
intermediate array). A picture larger than the ring's slots is scaled down to fit, keeping its
aspect ratio; 4:2:0 pictures of odd size are trimmed to even (what the encoder downstream needs).
Frames carry pts in 90 kHz, ``KEYFRAME``/``DISCONTINUITY``/``END_OF_STREAM`` flags, the
decoder's colour description (``ipc.colour``, in the flags' upper bits, whatever the ring's
format) and the ``INGEST_FIRST_BYTE``, ``DECODED`` and ``INGEST_WRITTEN`` stamps.

An ``rgb24`` ring (inference on the CPU, ``ipc.ring_format``) is filled by FFmpeg's swscale,
reading the input with its own matrix and range (BT.601/BT.709/BT.2020, limited/full): one
conversion into the converter's frame, one copy into the slot. Within 2 levels of the float
reference on flat colours (``tests/ingest/test_ring_sink.py``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import av
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter

from ingest.decode import yuv420p_array
from ingest.decoded import TS_TIME_BASE
from ingest.stats import IngestStats
from ipc import pixfmt
from ipc.colour import MATRIX_BT709, MATRIX_BT2020, RANGE_FULL, Colour
from ipc.frame import FrameFlag, Stage, new_stamps
from ipc.messages import Message, StreamAudio, StreamState
from ipc.pixfmt import PixelFormat
from ipc.ring import Reservation, RingWriter

log = logging.getLogger(__name__)

Send = Callable[[Message], Awaitable[None]]


def colour_of(frame: av.VideoFrame) -> Colour:
    """The colour description a decoded picture carries (from the stream's VUI)."""
    return Colour(
        matrix=int(frame.colorspace),
        range=int(frame.color_range),
        primaries=int(frame.color_primaries),
        transfer=int(frame.color_trc),
    )


RGB_INTERPOLATION = int(
    Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
)
"""swscale's flags for YUV -> RGB: its default fast path reads every colour 1-2 levels too dark
(a bias that adds up with egress's conversion back); accurate rounding with full chroma
interpolation matches the float reference within a level, for about 1 ms of CPU at 512x512."""


def swscale_source(colour: Colour, height: int) -> dict[str, int]:
    """``reformat`` arguments that make swscale read YUV with the picture's matrix and range
    (one scaling thread: the workers already run in parallel processes)."""
    resolved = colour.resolved(height)
    matrix = resolved.matrix if resolved.matrix in (MATRIX_BT709, MATRIX_BT2020) else 5
    return {
        "src_colorspace": matrix,
        "src_color_range": 2 if resolved.range == RANGE_FULL else 1,
        "interpolation": RGB_INTERPOLATION,
        "threads": 1,
    }


def copy_picture(frame: av.VideoFrame, planes: list[np.ndarray]) -> None:
    """Copy a picture's planes (rows padded to their line size) into ``planes`` (a slot's, of
    the same format and size), one copy per plane."""
    for source, target in zip(frame.planes, planes, strict=True):
        rows = target.shape[0]
        row_bytes = target.size // rows
        data = np.frombuffer(memoryview(source), np.uint8).reshape(-1, source.line_size)
        np.copyto(target.reshape(rows, row_bytes), data[:rows, :row_bytes], casting="no")


def fit_size(
    width: int, height: int, max_width: int, max_height: int, capacity: int, fmt: PixelFormat
) -> tuple[int, int]:
    """The size a ``width`` x ``height`` picture is written at.

    Unchanged when its bytes fit a slot (4:2:0 sizes rounded down to even); otherwise scaled to
    fit within ``max_width`` x ``max_height`` keeping the aspect ratio.
    """
    even = fmt != PixelFormat.RGB24
    w, h = width, height
    if pixfmt.frame_nbytes(fmt, w, h) > capacity:
        scale = min(max_width / w, max_height / h)
        w, h = max(1, int(w * scale)), max(1, int(h * scale))
    if even:
        w, h = max(2, w - w % 2), max(2, h - h % 2)
    return w, h


class RingSink:
    """Writes one stream's pictures to its input ring and forwards its audio packets."""

    def __init__(
        self,
        stream_id: str,
        writer: RingWriter,
        stats: IngestStats,
        send: Send,
        *,
        audio: bool = True,
    ) -> None:
        self.stream_id = stream_id
        self.writer = writer
        self.stats = stats
        self.audio_enabled = audio
        self._send = send
        spec = writer.ring.spec
        self._format = spec.format
        self._max = (spec.max_width, spec.max_height)
        self._capacity = spec.slot_capacity
        self._stamps = new_stamps()
        self._reformatter = VideoReformatter()  # keeps swscale's context between pictures
        self._sizes: dict[tuple[int, int], tuple[int, int]] = {}
        self._size: tuple[int, int] | None = None
        # A resumed stream (the ring already holds frames) does not follow on from them.
        self._discontinuity = writer.next_seq > 1
        self.frames = 0
        self.last_seq = 0

    def mark_discontinuity(self) -> None:
        """The next frame does not follow the previous one (input gap, reconnection)."""
        self._discontinuity = True

    async def video(
        self,
        frame: av.VideoFrame,
        *,
        pts: int,
        keyframe: bool,
        received_ns: int,
        decoded_ns: int,
        discontinuity: bool = False,
        end_of_stream: bool = False,
    ) -> int:
        """Write one decoded picture (pts in 90 kHz); returns its ring sequence number."""
        colour = colour_of(frame)
        # YUV rings keep the samples as they are (the colour travels in the flags).
        rgb = self._format == PixelFormat.RGB24
        convert = swscale_source(colour, frame.height) if rgb else {}
        width, height = self._target(frame.width, frame.height)
        if (width, height) != (frame.width, frame.height):
            frame = self._reformatter.reformat(
                frame, width=width, height=height, format=self._format.ffmpeg_name, **convert
            )
            self.stats.count("scaled")
        if self._size != (width, height):
            if self._size is not None:
                log.info(
                    "stream %s: input is now %dx%d (was %dx%d)",
                    self.stream_id,
                    width,
                    height,
                    *self._size,
                )
            self._size = (width, height)
        flags = colour.to_flags()
        if keyframe:
            flags |= FrameFlag.KEYFRAME
        if discontinuity or self._discontinuity:
            flags |= FrameFlag.DISCONTINUITY
            self._discontinuity = False
        if end_of_stream:
            flags |= FrameFlag.END_OF_STREAM
        stamps = self._stamps
        stamps[:] = 0
        stamps[Stage.INGEST_FIRST_BYTE] = received_ns
        stamps[Stage.DECODED] = decoded_ns
        with self.writer.reserve(
            width,
            height,
            pts=pts,
            time_base=TS_TIME_BASE,
            flags=int(flags),
            stamps=stamps,
        ) as slot:
            self._fill(frame, slot, convert)
            slot.stamp_on_commit = Stage.INGEST_WRITTEN
        written_ns = time.monotonic_ns()
        self.last_seq = self.writer.next_seq - 1
        self.stats.frame_written(received_ns, decoded_ns, written_ns)
        self.frames += 1
        if self.frames == 1:
            log.info(
                "stream %s: first frame %dx%d pts %d in ring %s",
                self.stream_id,
                width,
                height,
                pts,
                self.writer.ring.name,
            )
            await self._send(
                StreamState(stream_id=self.stream_id, worker="ingest", state="processing")
            )
        return self.last_seq

    def _target(self, width: int, height: int) -> tuple[int, int]:
        found = self._sizes.get((width, height))
        if found is None:
            found = fit_size(width, height, *self._max, self._capacity, self._format)
            if len(self._sizes) > 32:
                self._sizes.clear()
            self._sizes[(width, height)] = found
        return found

    def _fill(self, frame: av.VideoFrame, slot: Reservation, convert: dict[str, int]) -> None:
        if self._format == PixelFormat.YUV420P:
            yuv420p_array(frame, out=slot.array)  # one copy per plane, decoder -> slot
            return
        if frame.format.name != self._format.ffmpeg_name:
            frame = self._reformatter.reformat(frame, format=self._format.ffmpeg_name, **convert)
        copy_picture(frame, list(slot.planes))

    async def audio(
        self, codec: str, pts: int, data: bytes, sample_rate: int, channels: int
    ) -> None:
        """Forward one encoded audio packet (pts in 90 kHz) to the parent, if audio is on."""
        if not self.audio_enabled:
            return
        self.stats.audio_packets += 1
        await self._send(
            StreamAudio(
                stream_id=self.stream_id,
                codec=codec,
                pts=pts,
                data=data,
                sample_rate=sample_rate,
                channels=channels,
            )
        )
