"""A stream's events channel as the benchmark reads it: every status event, stamped on arrival,
and the figures in them (per-stage latency percentiles, drops by reason, fps).

Runner events are one JSON document per segment, ``{"queue_event_type", "event": {...}}``. The
per-stage figures are read from ``event["stages"]`` (``{stage: {"p50", "p95", "p99",
"count"}}``) or from ``event["workers"][worker]["stages"]``; drops by reason from
``event["dropped"]`` or the workers' ``dropped``; when an event carries only the totals
(``latency_ms``, ``frames_dropped``), those are what is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from byoc.livepeer.trickle import SegmentReadError, SubscribeError, TrickleSubscriber

log = logging.getLogger(__name__)

MAX_EVENT_BYTES = 1 << 20


@dataclass(frozen=True)
class StageFigures:
    """One stage's latency over one report interval, in ms."""

    p50: float
    p95: float
    p99: float
    count: int


def _stage_figures(raw: Any) -> dict[str, StageFigures]:
    out: dict[str, StageFigures] = {}
    if not isinstance(raw, dict):
        return out
    for name, values in raw.items():
        if not isinstance(values, dict):
            continue
        try:
            out[str(name)] = StageFigures(
                p50=float(values.get("p50", 0.0)),
                p95=float(values.get("p95", 0.0)),
                p99=float(values.get("p99", 0.0)),
                count=int(values.get("count", 0)),
            )
        except (TypeError, ValueError):
            continue
    return out


def stages_of(event: dict[str, Any]) -> dict[str, StageFigures]:
    """Per-stage figures in a status event (``{}`` when it has none)."""
    stages = _stage_figures(event.get("stages"))
    workers = event.get("workers")
    if isinstance(workers, dict):
        for report in workers.values():
            if isinstance(report, dict):
                for name, figures in _stage_figures(report.get("stages")).items():
                    stages.setdefault(name, figures)
    return stages


def _counts(raw: Any, prefix: str = "") -> dict[str, int]:
    out: dict[str, int] = {}
    if isinstance(raw, dict):
        for reason, value in raw.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[f"{prefix}{reason}"] = int(value)
    return out


def drops_of(event: dict[str, Any]) -> dict[str, int]:
    """Dropped frames by reason in a status event; ``{"total": n}`` when only a total is given."""
    drops = _counts(event.get("dropped"))
    workers = event.get("workers")
    if isinstance(workers, dict):
        for worker, report in workers.items():
            if isinstance(report, dict):
                drops.update(_counts(report.get("dropped"), f"{worker}."))
    if not drops and isinstance(event.get("frames_dropped"), int):
        drops["total"] = int(event["frames_dropped"])
    return drops


@dataclass
class EventLog:
    """Status events of one stream, with the monotonic ns each one was read at."""

    stream_id: str
    events: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    other: int = 0  # documents that were not status events (pytrickle's own kinds, heartbeats)

    def states(self) -> list[str]:
        return [str(e.get("state")) for _, e in self.events]


class EventsReader:
    """Follows a stream's events channel from its first segment until it ends or ``close()``."""

    def __init__(self, stream_id: str, events_url: str) -> None:
        self.log = EventLog(stream_id)
        self.subscriber = TrickleSubscriber(events_url, start_seq=0, verify_tls=False)
        self.changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"events-{self.log.stream_id}")

    async def _run(self) -> None:
        try:
            async for segment in self.subscriber:
                try:
                    data = await segment.read_all(MAX_EVENT_BYTES)
                except SegmentReadError:
                    continue
                now = time.monotonic_ns()
                try:
                    document = json.loads(data)
                except ValueError:
                    continue
                event = document.get("event") if isinstance(document, dict) else None
                if isinstance(event, dict) and event.get("type") == "status":
                    self.log.events.append((now, event))
                    self.changed.set()
                else:
                    self.log.other += 1
        except SubscribeError as exc:
            log.info("events %s: %s", self.log.stream_id, exc)

    async def wait_for_state(self, states: set[str], timeout: float) -> str | None:
        """Wait until a status event reports one of ``states``; the state, or None on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self.changed.clear()
            for _, event in self.log.events:
                if event.get("state") in states:
                    return str(event["state"])
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)

    async def close(self) -> None:
        await self.subscriber.close()
        if self.task is not None:
            done, _ = await asyncio.wait([self.task], timeout=5.0)
            if not done:
                self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
