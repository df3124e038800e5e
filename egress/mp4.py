"""A processed clip written as an MP4 file: H.264 video and, when the input had audio, AAC.

The file is written to ``<path>.part`` and moved to ``path`` by :meth:`Mp4Writer.close`, so a
reader never sees a half-written file (a worker killed mid-clip leaves only the ``.part``).
``movflags=+faststart`` puts the index first, so the file can be served for progressive
playback.

Timestamps: the first picture's pts becomes 0; audio keeps its offset to it (audio from before
the first picture is dropped, counted). All pictures have the size of the first one (MP4 tracks
have one size; others are scaled to it, counted). Audio of any codec the egress decodes (AAC,
Opus) is re-encoded to AAC at 48 kHz, the format every MP4 player takes. The audio track is
fixed at the first picture, as in :mod:`egress.live`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import deque
from fractions import Fraction
from typing import cast

import av
from av.audio.stream import AudioStream
from av.container import OutputContainer
from av.video.frame import PictureType
from av.video.stream import VideoStream

from egress.audio import StreamAudioDecoder
from egress.colour import colour_of
from ipc.colour import Colour
from ipc.messages import DropReason, StreamAudio

log = logging.getLogger(__name__)

TS_CLOCK = 90_000
TS_TIME_BASE = Fraction(1, TS_CLOCK)
AUDIO_RATE = 48_000
AAC_FRAME = 1024
_MAX_EARLY_AUDIO = 250


class Mp4Writer:
    """Pictures and the input's audio in, one MP4 file out (see the module docstring)."""

    def __init__(
        self,
        path: str,
        *,
        audio: bool = True,
        frame_rate: int = 30,
        preset: str = "superfast",
        crf: int = 23,
        bit_rate: int = 0,
        label: str = "",
    ) -> None:
        self.path = path
        self.part_path = path + ".part"
        self.audio_wanted = audio
        self.frame_rate = frame_rate
        self.label = label
        self.frames = 0
        self.counters: dict[DropReason, int] = {}
        self.size: tuple[int, int] | None = None
        self._options = {"preset": preset, "crf": str(crf)}
        if bit_rate:
            self._options = {"preset": preset, "b": str(bit_rate), "maxrate": str(bit_rate)}
            self._options["bufsize"] = str(bit_rate)
        self._container: OutputContainer | None = None
        self._video: VideoStream | None = None
        self._audio: AudioStream | None = None
        self._first_pts: int | None = None
        self._last_pts: int | None = None
        self._early_audio: deque[StreamAudio] = deque()
        self._decoder = StreamAudioDecoder(label=label)
        self._resampler: av.AudioResampler | None = None
        self._next_sample = 0
        self._expected_sample: int | None = None
        self.closed = False

    @property
    def audio_seen(self) -> bool:
        return bool(self._early_audio)

    @property
    def has_audio(self) -> bool:
        return self._audio is not None

    def dropped(self) -> dict[DropReason, int]:
        out = dict(self.counters)
        out["audio_decode_error"] = self._decoder.errors
        return out

    def _count(self, reason: DropReason, n: int = 1) -> None:
        if n:
            self.counters[reason] = self.counters.get(reason, 0) + n

    # -- video ------------------------------------------------------------------------------

    def video(self, frame: av.VideoFrame, pts: int) -> None:
        """Encode and write one picture (pts in 90 kHz)."""
        if self._container is None:
            early = self._open(frame.width, frame.height, colour_of(frame))
            self._first_pts = pts
            for message in early:
                self.audio(message)
        assert self._video is not None and self.size is not None and self._first_pts is not None
        if self._last_pts is not None and pts <= self._last_pts:
            self._count("non_increasing_pts")
            return
        if (frame.width, frame.height) != self.size:
            frame = frame.reformat(width=self.size[0], height=self.size[1], format="yuv420p")
            self._count("mp4_scaled")
        elif frame.format.name != "yuv420p":
            frame = frame.reformat(format="yuv420p")
        frame.pts = pts - self._first_pts
        frame.time_base = TS_TIME_BASE
        frame.pict_type = PictureType.NONE
        self._mux(self._video.encode(frame))
        self._last_pts = pts
        self.frames += 1

    # -- audio ------------------------------------------------------------------------------

    def audio(self, message: StreamAudio) -> None:
        """Take one audio packet of the input (pts in 90 kHz)."""
        if not self.audio_wanted:
            return
        if self._container is None:
            if len(self._early_audio) >= _MAX_EARLY_AUDIO:
                self._early_audio.popleft()
                self._count("audio_overflow")
            self._early_audio.append(message)
            return
        if self._audio is None:
            self._count("audio_no_track")
            return
        for frame in self._decoder.decode(message):
            self._encode_audio(frame)

    def _encode_audio(self, frame: av.AudioFrame) -> None:
        assert self._audio is not None and self._first_pts is not None
        offset = (frame.pts or 0) - self._first_pts
        if offset < 0:
            self._count("audio_before_video")
            return
        position = offset * AUDIO_RATE // TS_CLOCK
        if (
            self._resampler is None
            or self._expected_sample is None
            or abs(position - self._expected_sample) > AUDIO_RATE // 50
        ):
            self._drain_resampler()
            self._resampler = av.AudioResampler(
                format="fltp", layout=self._audio.layout.name, rate=AUDIO_RATE, frame_size=AAC_FRAME
            )
            self._next_sample = max(position, self._next_sample)
        self._expected_sample = position + frame.samples * AUDIO_RATE // frame.sample_rate
        frame.pts = None  # the resampler's output is numbered below
        try:
            chunks = self._resampler.resample(frame)
        except ValueError:  # the input format changed: start a new resampler
            self._resampler = None
            self._expected_sample = None
            return
        for chunk in chunks:
            self._encode_samples(chunk)

    def _encode_samples(self, chunk: av.AudioFrame) -> None:
        assert self._audio is not None
        chunk.pts = self._next_sample
        chunk.time_base = Fraction(1, AUDIO_RATE)
        self._next_sample += chunk.samples
        self._mux(self._audio.encode(chunk))

    def _drain_resampler(self) -> None:
        if self._resampler is None:
            return
        for chunk in self._resampler.resample(None):
            self._encode_samples(chunk)
        self._resampler = None

    # -- file -------------------------------------------------------------------------------

    def _open(self, width: int, height: int, colour: Colour) -> list[StreamAudio]:
        """Create the file and its tracks (the video's VUI declares ``colour``, resolved for
        its size); returns the audio that arrived before."""
        width, height = width - width % 2, height - height % 2
        os.makedirs(os.path.dirname(os.path.abspath(self.part_path)), exist_ok=True)
        container = cast(
            OutputContainer,
            av.open(self.part_path, "w", format="mp4", options={"movflags": "+faststart"}),
        )
        try:
            video = cast(
                VideoStream,
                container.add_stream("libx264", rate=self.frame_rate, options=self._options),
            )
            video.width, video.height, video.pix_fmt = width, height, "yuv420p"
            video.time_base = TS_TIME_BASE
            video.codec_context.time_base = TS_TIME_BASE
            tagged = colour.resolved(height)
            ctx = video.codec_context
            ctx.colorspace, ctx.color_range = tagged.matrix, tagged.range
            ctx.color_primaries, ctx.color_trc = tagged.primaries, tagged.transfer
            if self.audio_wanted and self._early_audio:
                channels = 1 if self._early_audio[0].channels == 1 else 2
                audio = cast(AudioStream, container.add_stream("aac", rate=AUDIO_RATE))
                audio.layout = "mono" if channels == 1 else "stereo"
                audio.time_base = Fraction(1, AUDIO_RATE)
                self._audio = audio
        except BaseException:
            container.close()
            raise
        self._container, self._video, self.size = container, video, (width, height)
        log.info(
            "stream %s: writing %s (%dx%d%s)",
            self.label,
            self.path,
            width,
            height,
            ", AAC audio" if self._audio is not None else ", no audio",
        )
        early, self._early_audio = list(self._early_audio), deque()
        return early

    def _mux(self, packets: list[av.Packet]) -> None:
        assert self._container is not None
        for packet in packets:
            self._container.mux(packet)

    def close(self) -> bool:
        """Finish the file and move it to ``path``; False when no picture was ever written."""
        if self.closed:
            return self._container is not None and self.frames > 0
        self.closed = True
        container = self._container
        if container is None:
            return False
        try:
            assert self._video is not None
            self._mux(self._video.encode(None))
            if self._audio is not None:
                self._drain_resampler()
                self._mux(self._audio.encode(None))
        finally:
            container.close()
        if not self.frames:
            with contextlib.suppress(OSError):
                os.unlink(self.part_path)
            return False
        os.replace(self.part_path, self.path)
        log.info("stream %s: %s finished, %d frames", self.label, self.path, self.frames)
        return True

    def abort(self) -> None:
        """Drop the file being written (the stream was replaced or failed)."""
        if self.closed:
            return
        self.closed = True
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
        with contextlib.suppress(OSError):
            os.unlink(self.part_path)
