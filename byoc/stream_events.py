"""Status events of a stream: the figures workers report, folded into the events channel format.

Each event is one JSON document (one trickle segment)::

    {"queue_event_type": "ai_stream_events",
     "event": {"type": "status", "stream_id", "state", "params", "fps_in", "fps_out",
               "frames_dropped", "latency_ms", "restarts", "last_error", "timestamp"}}

``timestamp`` is milliseconds since the epoch (as Livepeer's runners send it). Figures come from
the workers' latest ``StreamStats``: ``fps_in`` from ingest, ``fps_out`` from egress (or the
largest any worker reports), ``frames_dropped`` the video frames lost, summed over workers and
reasons (frames that were scaled or passed through, and audio, are not lost frames), and
``latency_ms`` the p50 of egress's ``end_to_end`` stage (first byte in -> published) when it has
one, else the sum of the p50 of each distinct stage. All zero until media flows.

Two fields beyond go-livepeer's status map carry the detail: ``stages`` (each stage's p50, p95,
p99 and count, egress's figures first since it sees the whole path) and ``dropped`` (drops by
``worker.reason``); ``resumed`` counts the times a restarted runner picked the stream up again.
``StreamFigures.encoders`` (egress's shared WHEP encoders) is shown in the session's status only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ipc.echo import clip_text, summarize_large_values
from ipc.messages import DELIVERED_REASONS, StageLatency, StreamStats

QUEUE_EVENT_TYPE = "ai_stream_events"
END_TO_END = "end_to_end"


def _lost(reason: str) -> bool:
    return reason not in DELIVERED_REASONS and not reason.startswith("audio_")


@dataclass
class StreamFigures:
    """The latest ``StreamStats`` of each worker for one stream."""

    by_worker: dict[str, StreamStats] = field(default_factory=dict)

    def update(self, stats: StreamStats) -> None:
        self.by_worker[stats.worker] = stats

    @property
    def fps_in(self) -> float:
        ingest = self.by_worker.get("ingest")
        if ingest is not None:
            return ingest.fps_in
        return max((s.fps_in for s in self.by_worker.values()), default=0.0)

    @property
    def fps_out(self) -> float:
        egress = self.by_worker.get("egress")
        if egress is not None:
            return egress.fps_out
        return max((s.fps_out for s in self.by_worker.values()), default=0.0)

    @property
    def frames_dropped(self) -> int:
        return sum(n for reason, n in self.dropped.items() if _lost(reason.split(".", 1)[1]))

    @property
    def dropped(self) -> dict[str, int]:
        """Every counted reason, as ``worker.reason``."""
        return {
            f"{worker}.{reason}": n
            for worker, s in sorted(self.by_worker.items())
            for reason, n in s.dropped.items()
        }

    @property
    def stages(self) -> dict[str, StageLatency]:
        """Each stage once: egress's view first (it sees every stamp), then the others'."""
        order = sorted(self.by_worker, key=lambda w: (w != "egress", w))
        merged: dict[str, StageLatency] = {}
        for worker in order:
            for name, stage in self.by_worker[worker].stages.items():
                merged.setdefault(name, stage)
        return merged

    @property
    def encoders(self) -> dict[str, int]:
        """Egress's shared WHEP encoder totals (empty without WHEP)."""
        egress = self.by_worker.get("egress")
        return dict(egress.encoders) if egress is not None else {}

    @property
    def latency_ms(self) -> float:
        stages = self.stages
        if END_TO_END in stages:
            return stages[END_TO_END].p50
        return sum(stage.p50 for stage in stages.values())


def status_event(
    *,
    stream_id: str,
    state: str,
    params: dict[str, Any],
    figures: StreamFigures,
    restarts: int,
    last_error: str | None,
    now: float | None = None,
    resumed: int = 0,
) -> dict[str, Any]:
    """One status event document for the events channel."""
    return {
        "queue_event_type": QUEUE_EVENT_TYPE,
        "event": {
            "type": "status",
            "stream_id": stream_id,
            "state": state,
            "params": summarize_large_values(params),
            "fps_in": round(figures.fps_in, 3),
            "fps_out": round(figures.fps_out, 3),
            "frames_dropped": figures.frames_dropped,
            "latency_ms": round(float(figures.latency_ms), 3),
            "restarts": restarts,
            "last_error": None if last_error is None else clip_text(last_error),
            "timestamp": int((time.time() if now is None else now) * 1000),
            "stages": {
                name: {"p50": st.p50, "p95": st.p95, "p99": st.p99, "count": st.count}
                for name, st in figures.stages.items()
            },
            "dropped": figures.dropped,
            "resumed": resumed,
        },
    }
