"""Latency figures for ``StreamStats``: fixed-bucket percentile accumulators and the pipeline's
stage definitions over ``Frame.stamps``.

A :class:`LatencyHistogram` keeps counts in log-spaced buckets (8 per octave, so a reported
percentile is within about 6 % of the true value) from 1 ns up to about 18 minutes. Recording a
value is a few integer operations and one list increment: no per-frame allocation, no sample
list that grows with the frame rate, and the same cost at any report interval.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from ipc.frame import Stage
from ipc.messages import StageLatency

_SUB_BITS = 3
_SUB = 1 << _SUB_BITS  # buckets per octave
_MAX_EXPONENT = 40  # 2**40 ns ~ 18 minutes; larger values land in the last bucket
BUCKETS = _SUB + (_MAX_EXPONENT - _SUB_BITS + 1) * _SUB


def bucket_of(ns: int) -> int:
    """Index of the bucket holding ``ns`` (values below 8 ns have a bucket each)."""
    if ns < _SUB:
        return ns if ns > 0 else 0
    exponent = ns.bit_length() - 1
    if exponent > _MAX_EXPONENT:
        return BUCKETS - 1
    shift = exponent - _SUB_BITS
    return _SUB + shift * _SUB + ((ns >> shift) - _SUB)


def bucket_bounds(index: int) -> tuple[int, int]:
    """``[low, high)`` nanoseconds covered by bucket ``index``."""
    if index < _SUB:
        return index, index + 1
    shift, mantissa = divmod(index - _SUB, _SUB)
    low = (_SUB + mantissa) << shift
    return low, low + (1 << shift)


class LatencyHistogram:
    """Durations in nanoseconds in, p50/p95/p99 out (see the module docstring)."""

    __slots__ = ("_counts", "count", "max_ns", "min_ns", "total_ns")

    def __init__(self) -> None:
        self._counts = [0] * BUCKETS
        self.count = 0
        self.total_ns = 0
        self.min_ns = 0
        self.max_ns = 0

    def record(self, ns: int) -> None:
        """Count one duration (negative values, from clock misuse, count as 0)."""
        if ns < 0:
            ns = 0
        self._counts[bucket_of(ns)] += 1
        if not self.count or ns < self.min_ns:
            self.min_ns = ns
        if ns > self.max_ns:
            self.max_ns = ns
        self.count += 1
        self.total_ns += ns

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0-100) in nanoseconds; 0.0 when empty.

        The value is the middle of the bucket holding the rank, clamped to the observed
        minimum and maximum (so a single sample reports itself exactly).
        """
        if not self.count:
            return 0.0
        rank = max(1, min(self.count, math.ceil(q / 100.0 * self.count)))
        seen = 0
        for index, n in enumerate(self._counts):
            seen += n
            if seen >= rank:
                low, high = bucket_bounds(index)
                middle = (low + high - 1) / 2.0
                return float(min(max(middle, self.min_ns), self.max_ns))
        return float(self.max_ns)  # pragma: no cover - counts always add up to count

    @property
    def mean_ns(self) -> float:
        return self.total_ns / self.count if self.count else 0.0

    def summary(self) -> StageLatency:
        """p50/p95/p99 in milliseconds, the sample count, sum and non-empty buckets, as
        ``StreamStats`` carries them."""
        return StageLatency(
            p50=round(self.percentile(50) / 1e6, 4),
            p95=round(self.percentile(95) / 1e6, 4),
            p99=round(self.percentile(99) / 1e6, 4),
            count=self.count,
            sum_ms=round(self.total_ns / 1e6, 6),
            buckets={index: n for index, n in enumerate(self._counts) if n},
        )

    def merge(self, other: LatencyHistogram) -> None:
        """Add another histogram's counts to this one."""
        if not other.count:
            return
        for index, n in enumerate(other._counts):
            if n:
                self._counts[index] += n
        self.min_ns = other.min_ns if not self.count else min(self.min_ns, other.min_ns)
        self.max_ns = max(self.max_ns, other.max_ns)
        self.count += other.count
        self.total_ns += other.total_ns

    def reset(self) -> None:
        """Forget every sample (start a new report interval)."""
        if self.count:
            counts = self._counts
            for index in range(BUCKETS):
                counts[index] = 0
        self.count = 0
        self.total_ns = 0
        self.min_ns = 0
        self.max_ns = 0


class StageLatencies:
    """One :class:`LatencyHistogram` per named stage, created on first use."""

    def __init__(self) -> None:
        self._stages: dict[str, LatencyHistogram] = {}

    def record(self, name: str, ns: int) -> None:
        histogram = self._stages.get(name)
        if histogram is None:
            histogram = self._stages[name] = LatencyHistogram()
        histogram.record(ns)

    def record_pipeline(self, stamps: np.ndarray | list[int]) -> None:
        """Record every stage of ``PIPELINE_STAGES`` a frame's stamps span."""
        stages = self._stages
        for name, ns in pipeline_latencies(stamps):
            histogram = stages.get(name)
            if histogram is None:
                histogram = stages[name] = LatencyHistogram()
            histogram.record(ns)

    def record_between(self, name: str, start_ns: int, end_ns: int) -> None:
        """Record ``end - start`` when both stamps are set (non-zero)."""
        if start_ns and end_ns:
            self.record(name, end_ns - start_ns)

    def get(self, name: str) -> LatencyHistogram | None:
        return self._stages.get(name)

    def summary(self) -> dict[str, StageLatency]:
        """Every stage that has samples, as ``StreamStats.stages``."""
        return {name: h.summary() for name, h in self._stages.items() if h.count}

    def reset(self) -> None:
        for histogram in self._stages.values():
            histogram.reset()


PIPELINE_STAGES: tuple[tuple[str, tuple[Stage, ...], tuple[Stage, ...]], ...] = (
    ("decode", (Stage.INGEST_FIRST_BYTE,), (Stage.DECODED,)),
    ("ingest_write", (Stage.DECODED,), (Stage.INGEST_WRITTEN,)),
    ("ingest_to_infer", (Stage.INGEST_WRITTEN,), (Stage.INFER_READ, Stage.INFER_START)),
    ("infer", (Stage.INFER_START,), (Stage.INFER_END,)),
    ("infer_to_egress", (Stage.INFER_WRITTEN, Stage.INFER_END), (Stage.EGRESS_READ,)),
    ("encode", (Stage.EGRESS_READ,), (Stage.ENCODED,)),
    ("publish", (Stage.ENCODED,), (Stage.PUBLISHED,)),
    ("end_to_end", (Stage.INGEST_FIRST_BYTE,), (Stage.PUBLISHED,)),
)
"""Stage name, start stamp(s), end stamp(s): the first stamp that is set is used, so a stream
whose infer step did not stamp ``INFER_READ`` still gets its ring wait up to ``INFER_START``."""


# The same table with the stamps as plain list indices (a frame's stamps are read as a list
# once per frame: indexing a numpy array element by element costs more than the whole record).
_PIPELINE_INDICES: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...] = tuple(
    (name, tuple(int(s) for s in starts), tuple(int(s) for s in ends))
    for name, starts, ends in PIPELINE_STAGES
)


def _first_set(stamps: list[int], stages: tuple[int, ...]) -> int:
    for stage in stages:
        value = stamps[stage]
        if value:
            return value
    return 0


def pipeline_latencies(stamps: np.ndarray | list[int]) -> Iterator[tuple[str, int]]:
    """``(stage name, nanoseconds)`` for every stage of ``PIPELINE_STAGES`` whose two ends are
    stamped in ``stamps`` (a frame's ``int64[NUM_STAGES]``, or the same as a list)."""
    values = stamps.tolist() if isinstance(stamps, np.ndarray) else stamps
    for name, starts, ends in _PIPELINE_INDICES:
        start = _first_set(values, starts)
        end = _first_set(values, ends)
        if start and end:
            yield name, end - start
