"""The ingest side's figures for one stream, reported to the parent as ``StreamStats``.

``frames_in`` and every ``dropped`` count are totals since the stream started in this worker;
``fps_in`` and the stage percentiles cover the interval since the previous report.

Stages (milliseconds): ``decode`` = first byte of the frame's packet received -> picture
decoded; ``ring_write`` = decoded -> published in the input ring (scaling, when needed, and the
copy into the slot).

Drop reasons: ``decode_error`` (packets the H.264 decoder rejected), ``skipped_until_keyframe``
(packets dropped while waiting for a keyframe: late join, after a loss or an error),
``damaged_input`` (video packets the demuxer dropped: lost TS packets, a segment cut short),
``scaled`` (frames larger than the ring's slots, scaled down to fit: delivered, but not as
sent), ``audio_unsupported`` (clip audio packets in a codec other than AAC or Opus).
"""

from __future__ import annotations

import time

from ipc.messages import DropReason, StreamStats, WorkerRole
from ipc.stats import StageLatencies

WORKER: WorkerRole = "ingest"


class IngestStats:
    """Counters and stage histograms of one ingest stream."""

    def __init__(self, stream_id: str) -> None:
        self.stream_id = stream_id
        self.frames_in = 0
        self.audio_packets = 0
        self.counters: dict[DropReason, int] = {}
        self.stages = StageLatencies()
        self._window_start = time.monotonic()
        self._window_frames = 0

    def count(self, reason: DropReason, n: int = 1) -> None:
        """Add ``n`` to the drop counter ``reason``."""
        self.counters[reason] = self.counters.get(reason, 0) + n

    def frame_written(self, received_ns: int, decoded_ns: int, written_ns: int) -> None:
        """One frame reached the ring."""
        self.frames_in += 1
        self._window_frames += 1
        self.stages.record_between("decode", received_ns, decoded_ns)
        self.stages.record_between("ring_write", decoded_ns, written_ns)

    def report(
        self, source_counters: dict[DropReason, int] | None = None, *, bytes_in: int = 0
    ) -> StreamStats:
        """A ``StreamStats`` for the interval since the last report (which starts a new one)."""
        now = time.monotonic()
        elapsed = max(now - self._window_start, 1e-6)
        dropped = dict(source_counters or {})
        for reason, n in self.counters.items():
            dropped[reason] = dropped.get(reason, 0) + n
        stats = StreamStats(
            stream_id=self.stream_id,
            worker=WORKER,
            fps_in=round(self._window_frames / elapsed, 3),
            frames_in=self.frames_in,
            dropped=dropped,
            stages=self.stages.summary(),
            bytes_in=bytes_in,
        )
        self._window_start = now
        self._window_frames = 0
        self.stages.reset()
        return stats
