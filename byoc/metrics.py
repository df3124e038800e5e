"""Prometheus metrics of the runner, built from what the parent already knows.

This module is the one adapter between the parent's state and ``prometheus_client``: the workers
do nothing for it. Per-stream series come from the ``StreamStats`` messages the workers send
once per report interval; worker series from the supervisor (and ``/proc`` of each worker's pid,
read at scrape time); runner series from the session table, the registration service and a few
events the routes report (refused admissions, unknown capabilities).

Label values come from closed sets only: stream ids of live streams (their series disappear
when the stream ends), worker roles, capability names (anything else is ``other``), session and
worker states, orchestrator URLs from the settings, drop reasons and stage names from our
workers' code. No request can create a new series.

Latency histograms: the workers send each interval's samples as buckets of
``ipc.stats.LatencyHistogram`` (8 per octave); each is added to the Prometheus bucket that holds
its middle, so a bucket boundary is exact to within about 6 %.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from byoc.sessions import LIVE_STATES, Session, SessionKind, SessionState
from byoc.settings import ALL_CAPABILITIES
from byoc.worker_names import worker_role_index
from ipc.messages import StageLatency, StreamStats
from ipc.stats import bucket_bounds

if TYPE_CHECKING:
    from byoc.runtime import Runtime

log = logging.getLogger(__name__)

OTHER = "other"
REFUSAL_REASONS = ("stream_capacity", "job_capacity", "worker_unavailable", "draining")
"""Why an admission was answered 503: no free stream slot, no free job slot, a worker needed
for it is starting or restarting."""
LATENCY_BUCKETS_S = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.015,
    0.025,
    0.035,
    0.05,
    0.075,
    0.1,
    0.15,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
JOB_DURATION_BUCKETS_S = (0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
STAGE_OWNER = "egress"
"""Egress computes every pipeline stage from the frame's stamps when it publishes it: its view
of a stage wins over another worker's figure under the same name."""

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def capability_label(name: str) -> str:
    """``name`` when it is one of the runner's capabilities, else ``other``."""
    return name if name in ALL_CAPABILITIES else OTHER


def worker_labels(name: str) -> tuple[str, str]:
    """(role, index) label values of a worker named ``ingest`` or ``infer-1``."""
    role, index = worker_role_index(name)
    return role, str(index)


def process_figures(pid: int) -> tuple[float, int] | None:
    """(CPU seconds, resident bytes) of ``pid`` from ``/proc``; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        with open(f"/proc/{pid}/statm", "rb") as statm:
            resident_pages = int(statm.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    # Fields after the command name start at "state" (field 3): utime is 14, stime 15.
    cpu_s = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    return cpu_s, resident_pages * _PAGE_SIZE


def _prometheus_bucket(index: int) -> int:
    """Position in ``LATENCY_BUCKETS_S`` (``len`` = +Inf) of an ``ipc.stats`` bucket."""
    low, high = bucket_bounds(index)
    middle_s = (low + high - 1) / 2e9
    for position, bound in enumerate(LATENCY_BUCKETS_S):
        if middle_s <= bound:
            return position
    return len(LATENCY_BUCKETS_S)


@dataclass
class _StageHistogram:
    worker: str
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))
    sum_s: float = 0.0

    def add(self, stage: StageLatency) -> None:
        for index, n in stage.buckets.items():
            self.counts[_prometheus_bucket(int(index))] += n
        self.sum_s += stage.sum_ms / 1000.0

    def cumulative(self) -> list[tuple[str, float]]:
        out, total = [], 0
        for bound, n in zip((*LATENCY_BUCKETS_S, float("inf")), self.counts, strict=True):
            total += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(total)))
        return out


@dataclass
class _StreamSeries:
    """What the parent accumulated for one live stream from its workers' reports."""

    frames_in: dict[str, float] = field(default_factory=dict)
    frames_out: dict[str, float] = field(default_factory=dict)
    dropped: dict[tuple[str, str], float] = field(default_factory=dict)
    last_totals: dict[tuple[str, str], int] = field(default_factory=dict)
    stages: dict[str, _StageHistogram] = field(default_factory=dict)

    def delta(self, key: tuple[str, str], total: int) -> int:
        """How much a worker's running total grew (a restarted worker starts again at 0)."""
        last = self.last_totals.get(key, 0)
        self.last_totals[key] = total
        return total - last if total >= last else total


class RunnerMetrics:
    """Every metric of the runner, in its own registry (see the module docstring)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.refused = Counter(
            "byoc_admissions_refused",
            "Requests answered 503 because the runner could not take them, by reason",
            ["reason"],
            registry=self.registry,
        )
        for reason in REFUSAL_REASONS:
            self.refused.labels(reason)
        self.jobs = Counter(
            "byoc_jobs",
            "One-shot jobs by capability and how they ended "
            "(completed, failed, stopped; not_found for an unknown capability)",
            ["capability", "status"],
            registry=self.registry,
        )
        self.job_duration = Histogram(
            "byoc_job_duration_seconds",
            "Time from a job's admission to its end, by capability",
            ["capability"],
            buckets=JOB_DURATION_BUCKETS_S,
            registry=self.registry,
        )
        self.trickle_bytes = Counter(
            "byoc_trickle_bytes",
            "Media bytes moved over trickle by the workers (in: subscribed input, "
            "out: published output)",
            ["direction"],
            registry=self.registry,
        )
        for direction in ("in", "out"):
            self.trickle_bytes.labels(direction)
        ProcessCollector(namespace="byoc_parent", registry=self.registry)
        self._streams: dict[str, _StreamSeries] = {}
        self._runtime: Runtime | None = None

    # --- wiring ----------------------------------------------------------------------------

    def watch(self, runtime: Runtime) -> None:
        """Collect from ``runtime``: job sessions and scrape-time state. Workers' figures come
        through ``on_stream_stats``, which the parent's ``StreamStats`` handler calls."""
        self._runtime = runtime
        runtime.sessions.created.append(self.on_session)
        self.registry.register(_LiveCollector(self, runtime))

    # --- events ----------------------------------------------------------------------------

    def admission_refused(self, reason: str) -> None:
        """Count a 503 answer; ``reason`` is one of ``REFUSAL_REASONS``."""
        self.refused.labels(reason if reason in REFUSAL_REASONS else OTHER).inc()

    def unknown_capability(self) -> None:
        """A job for a capability the runner does not have (answered 404)."""
        self.jobs.labels(OTHER, "not_found").inc()

    def on_session(self, session: Session) -> None:
        """A new session: a job's end is counted and timed."""
        if session.kind is SessionKind.JOB:
            session.listeners.append(self._job_changed)

    def _job_changed(self, session: Session) -> None:
        if session.live or session.ended_at is None:
            return
        capability = capability_label(session.capability)
        self.jobs.labels(capability, session.state.value).inc()
        self.job_duration.labels(capability).observe(
            max(0.0, session.ended_at - session.created_at)
        )

    def on_stream_stats(self, worker: str, message: StreamStats) -> None:
        """Fold a worker's ``StreamStats`` into the stream's series."""
        runtime = self._runtime
        live = runtime is not None and runtime.streams.get(message.stream_id) is not None
        series = self._streams.get(message.stream_id)
        if series is None:
            if not live or runtime is None:
                return  # late figures of an ended stream must not bring its series back
            # Scrapes drop ended streams too; this keeps a runner nobody scrapes from piling up.
            self.forget_ended(c.id for c in runtime.streams.live())
            series = self._streams[message.stream_id] = _StreamSeries()
        # The sending worker's name (``infer-1`` when its role has several), else its role.
        name = worker if worker_role_index(worker)[0] == message.worker else message.worker
        name = name or worker
        # Running totals of the worker (keys with a space never clash with a drop reason).
        self.trickle_bytes.labels("in").inc(series.delta((name, " bytes_in"), message.bytes_in))
        self.trickle_bytes.labels("out").inc(series.delta((name, " bytes_out"), message.bytes_out))
        if not live:
            return
        series.frames_in[name] = series.frames_in.get(name, 0) + series.delta(
            (name, " frames_in"), message.frames_in
        )
        series.frames_out[name] = series.frames_out.get(name, 0) + series.delta(
            (name, " frames_out"), message.frames_out
        )
        for reason, total in message.dropped.items():
            key = (name, reason)
            series.dropped[key] = series.dropped.get(key, 0) + series.delta(key, total)
        for stage_name, stage in message.stages.items():
            histogram = series.stages.get(stage_name)
            if histogram is None or (name == STAGE_OWNER and histogram.worker != STAGE_OWNER):
                histogram = series.stages[stage_name] = _StageHistogram(name)
            if histogram.worker == name:
                histogram.add(stage)

    def forget_ended(self, live_ids: Iterable[str]) -> None:
        """Drop the series of streams that are no longer live."""
        keep = set(live_ids)
        for stream_id in [s for s in self._streams if s not in keep]:
            del self._streams[stream_id]

    def streams(self) -> dict[str, _StreamSeries]:
        return self._streams


class _LiveCollector(Collector):
    """Series read at scrape time from the runtime and the accumulated stream figures."""

    def __init__(self, metrics: RunnerMetrics, runtime: Runtime) -> None:
        self.metrics = metrics
        self.runtime = runtime

    def describe(self) -> list[Metric]:
        return []  # collected on demand only; names are listed in the README

    def collect(self) -> Iterator[Metric]:
        runtime = self.runtime
        live = {c.id: c for c in runtime.streams.live() if not c.ended}
        self.metrics.forget_ended(live)
        yield from _stream_metrics(self.metrics.streams(), live)
        yield from _worker_metrics(runtime)
        yield from _runner_metrics(runtime)


def _stream_metrics(streams: dict[str, _StreamSeries], live: dict[str, Any]) -> Iterator[Metric]:
    fps = GaugeMetricFamily(
        "byoc_stream_fps",
        "Frames per second of a live stream over the last report interval "
        "(in: ingest decoded, out: egress published), as its status events report them",
        labels=["stream_id", "direction"],
    )
    frames = CounterMetricFamily(
        "byoc_stream_frames",
        "Frames each worker of a live stream took in and passed on",
        labels=["stream_id", "worker", "direction"],
    )
    dropped = CounterMetricFamily(
        "byoc_stream_frames_dropped",
        "Frames (and audio packets, reasons audio_*) a worker of a live stream dropped or "
        "altered, by reason",
        labels=["stream_id", "worker", "reason"],
    )
    latency = HistogramMetricFamily(
        "byoc_stream_latency_seconds",
        "Per-stage latency of a live stream's frames (stage end_to_end: first input byte "
        "received -> output published)",
        labels=["stream_id", "stage"],
    )
    for stream_id, controller in sorted(live.items()):
        figures = controller.figures
        fps.add_metric([stream_id, "in"], figures.fps_in)
        fps.add_metric([stream_id, "out"], figures.fps_out)
        series = streams.get(stream_id)
        if series is None:
            continue
        for worker in sorted(series.frames_in):
            frames.add_metric([stream_id, worker, "in"], series.frames_in[worker])
            frames.add_metric([stream_id, worker, "out"], series.frames_out[worker])
        for (worker, reason), n in sorted(series.dropped.items()):
            dropped.add_metric([stream_id, worker, reason], n)
        for stage, histogram in sorted(series.stages.items()):
            latency.add_metric([stream_id, stage], histogram.cumulative(), histogram.sum_s)
    yield from (fps, frames, dropped, latency)


def _worker_metrics(runtime: Runtime) -> Iterator[Metric]:
    from byoc.supervisor import WorkerState

    labels = ["role", "index"]
    restarts = CounterMetricFamily(
        "byoc_worker_restarts", "Times a worker process was restarted", labels=labels
    )
    state = GaugeMetricFamily(
        "byoc_worker_state",
        "1 for the state a worker is in, 0 for the others",
        labels=[*labels, "state"],
    )
    heartbeat = GaugeMetricFamily(
        "byoc_worker_heartbeat_age_seconds",
        "Seconds since the parent last heard from a worker (heartbeat or any message)",
        labels=labels,
    )
    cpu = CounterMetricFamily(
        "byoc_worker_cpu_seconds", "CPU time of a worker's current process", labels=labels
    )
    rss = GaugeMetricFamily(
        "byoc_worker_resident_memory_bytes",
        "Resident memory of a worker's current process",
        labels=labels,
    )
    now = time.monotonic()
    for name, handle in sorted(runtime.supervisor.workers.items()):
        role_index = list(worker_labels(name))
        restarts.add_metric(role_index, handle.restarts)
        for value in WorkerState:
            state.add_metric([*role_index, value.value], 1.0 if handle.state is value else 0.0)
        if handle.last_heartbeat:
            heartbeat.add_metric(role_index, max(0.0, now - handle.last_heartbeat))
        pid = handle.pid
        figures = process_figures(pid) if pid is not None else None
        if figures is not None:
            cpu.add_metric(role_index, figures[0])
            rss.add_metric(role_index, figures[1])
    yield from (restarts, state, heartbeat, cpu, rss)


def _runner_metrics(runtime: Runtime) -> Iterator[Metric]:
    sessions = GaugeMetricFamily(
        "byoc_sessions",
        "Live sessions (streams and jobs) by capability and state",
        labels=["capability", "state"],
    )
    counts = {(c, s.value): 0 for c in ALL_CAPABILITIES for s in _LIVE_ORDER}
    for session in runtime.sessions:
        if session.live:
            key = (capability_label(session.capability), session.state.value)
            counts[key] = counts.get(key, 0) + 1
    for (capability, state_name), n in sorted(counts.items()):
        sessions.add_metric([capability, state_name], n)
    capacity = GaugeMetricFamily(
        "byoc_stream_capacity", "Streams the runner admits at once (--capacity)"
    )
    capacity.add_metric([], runtime.settings.capacity)
    registration = GaugeMetricFamily(
        "byoc_registration_state",
        "1 for the state of the registration with each orchestrator, 0 for the others",
        labels=["orchestrator", "state"],
    )
    if runtime.registration is not None:
        from byoc.registration import OrchestratorState

        for orchestrator in runtime.registration.orchestrators:
            for value in OrchestratorState:
                registration.add_metric(
                    [orchestrator.url, value.value], 1.0 if orchestrator.state is value else 0.0
                )
    yield from (sessions, capacity, registration)
    yield from _live_runner_metrics(runtime)


def _live_runner_metrics(runtime: Runtime) -> Iterator[Metric]:
    """Heartbeat state per orchestrator, sessions held and the capacity advertised."""
    control_plane = runtime.live_runner
    if control_plane is None:
        return
    from byoc.live_runner.heartbeat import HeartbeatState

    state = GaugeMetricFamily(
        "byoc_live_runner_heartbeat_state",
        "1 for the Live Runner heartbeat state with each orchestrator, 0 for the others",
        labels=["orchestrator", "state"],
    )
    heartbeats = CounterMetricFamily(
        "byoc_live_runner_heartbeats",
        "Live Runner heartbeats answered 200, by orchestrator",
        labels=["orchestrator"],
    )
    registrations = CounterMetricFamily(
        "byoc_live_runner_registrations",
        "Live Runner registrations (first heartbeats, and again after the orchestrator forgot us)",
        labels=["orchestrator"],
    )
    for orchestrator in control_plane.heartbeats.orchestrators:
        for value in HeartbeatState:
            state.add_metric(
                [orchestrator.url, value.value], 1.0 if orchestrator.state is value else 0.0
            )
        heartbeats.add_metric([orchestrator.url], orchestrator.heartbeats)
        registrations.add_metric([orchestrator.url], orchestrator.registrations)
    held = GaugeMetricFamily(
        "byoc_live_runner_sessions", "Live Runner sessions reserved for this runner"
    )
    held.add_metric([], len(control_plane.active))
    advertised = GaugeMetricFamily(
        "byoc_live_runner_capacity", "Capacity sent in the Live Runner heartbeats"
    )
    advertised.add_metric([], control_plane.capacity.heartbeat_capacity())
    released = CounterMetricFamily(
        "byoc_live_runner_idle_releases",
        "Live Runner sessions the runner released after --live-runner-idle-timeout",
    )
    released.add_metric([], control_plane.idle_released)
    yield from (state, heartbeats, registrations, held, advertised, released)


_LIVE_ORDER = tuple(s for s in SessionState if s in LIVE_STATES)
