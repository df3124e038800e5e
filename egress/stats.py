"""The egress side's figures for one stream, reported to the parent as ``StreamStats``.

``frames_in`` (read from the output ring), ``frames_out`` (published) and every ``dropped``
count are totals since the stream started in this worker; ``fps_in``/``fps_out`` and the stage
percentiles cover the interval since the previous report.

Stages are computed at publish time from each frame's stamps (``ipc.stats.PIPELINE_STAGES``),
so one report covers the whole path of the frames that made it out: ``decode``,
``ingest_write``, ``ingest_to_infer``, ``infer``, ``infer_to_egress``, ``encode`` (ring read
-> encoded and muxed), ``publish`` (muxed -> handed to the HTTP connection, or written to the
file) and ``end_to_end`` (first byte in -> published).

Drop reasons: ``ring_overwrite`` (frames infer wrote that the output ring overwrote before this
worker read them; the ring's own count, which survives worker restarts),
``non_increasing_pts``, ``audio_overflow`` (audio held too long for the video, oldest dropped),
``audio_before_video``, ``audio_no_track`` (MP4 only: audio that arrived after the file was
started without an audio track), ``audio_decode_error``, ``mp4_scaled`` (MP4 pictures of another size
than the first, scaled to it).
"""

from __future__ import annotations

import time

import numpy as np

from ipc.messages import DropReason, StreamStats, WorkerRole
from ipc.stats import StageLatencies

WORKER: WorkerRole = "egress"


class EgressStats:
    """Counters and stage histograms of one egress stream."""

    def __init__(self, stream_id: str) -> None:
        self.stream_id = stream_id
        self.frames_in = 0
        self.frames_out = 0
        self.stages = StageLatencies()
        self._window_start = time.monotonic()
        self._window_in = 0
        self._window_out = 0

    def frame_read(self) -> None:
        self.frames_in += 1
        self._window_in += 1

    def frame_published(self, stamps: np.ndarray) -> None:
        """One frame left (its ``PUBLISHED`` stamp set): record every stage it went through."""
        self.frames_out += 1
        self._window_out += 1
        self.stages.record_pipeline(stamps)

    def report(
        self,
        dropped: dict[DropReason, int],
        *,
        bytes_out: int = 0,
        encoders: dict[str, int] | None = None,
    ) -> StreamStats:
        """A ``StreamStats`` for the interval since the last report (which starts a new one)."""
        now = time.monotonic()
        elapsed = max(now - self._window_start, 1e-6)
        stats = StreamStats(
            stream_id=self.stream_id,
            worker=WORKER,
            fps_in=round(self._window_in / elapsed, 3),
            fps_out=round(self._window_out / elapsed, 3),
            frames_in=self.frames_in,
            frames_out=self.frames_out,
            dropped=dropped,
            stages=self.stages.summary(),
            bytes_out=bytes_out,
            encoders=encoders or {},
        )
        self._window_start = now
        self._window_in = self._window_out = 0
        self.stages.reset()
        return stats
