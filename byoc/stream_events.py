"""Status events of a stream: the figures workers report, folded into the events channel format.

Each event is one JSON document (one trickle segment)::

    {"queue_event_type": "ai_stream_events",
     "event": {"type": "status", "stream_id", "state", "params", "fps_in", "fps_out",
               "frames_dropped", "latency_ms", "restarts", "last_error", "timestamp"}}

``timestamp`` is milliseconds since the epoch (as Livepeer's runners send it). Figures come from
the workers' latest ``StreamStats``: ``fps_in`` from ingest, ``fps_out`` from egress (or the
largest any worker reports), ``frames_dropped`` summed over every worker and reason, and
``latency_ms`` the sum of the p50 of every stage (stages are disjoint per worker). All zero until
media flows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ipc.messages import StreamStats

QUEUE_EVENT_TYPE = "ai_stream_events"


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
        return sum(sum(s.dropped.values()) for s in self.by_worker.values())

    @property
    def latency_ms(self) -> float:
        return sum(stage.p50 for s in self.by_worker.values() for stage in s.stages.values())


def status_event(
    *,
    stream_id: str,
    state: str,
    params: dict[str, Any],
    figures: StreamFigures,
    restarts: int,
    last_error: str | None,
    now: float | None = None,
) -> dict[str, Any]:
    """One status event document for the events channel."""
    return {
        "queue_event_type": QUEUE_EVENT_TYPE,
        "event": {
            "type": "status",
            "stream_id": stream_id,
            "state": state,
            "params": params,
            "fps_in": round(figures.fps_in, 3),
            "fps_out": round(figures.fps_out, 3),
            "frames_dropped": figures.frames_dropped,
            "latency_ms": round(float(figures.latency_ms), 3),
            "restarts": restarts,
            "last_error": last_error,
            "timestamp": int((time.time() if now is None else now) * 1000),
        },
    }
