"""Which infer worker serves which stream, and where a one-shot job goes.

A runner may have several infer workers (``--infer-workers``). Each stream is held by one of them
for its whole life (its rings, its batching and its restart all follow that worker): a new stream
goes to the least-loaded ready worker, by streams held, ties to the lowest index. An image job
goes to the ready worker with the fewest streams plus jobs in flight. When no worker is ready
(all restarting) the least-loaded one is chosen anyway; the caller then waits for it or answers
503, exactly as with a single infer worker.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Protocol

log = logging.getLogger(__name__)

INFER = "infer"


class _Requests(Protocol):
    def in_flight(self, worker: str | None = None) -> int: ...


class WorkerTable(Protocol):
    """What placement needs of the supervisor."""

    @property
    def requests(self) -> _Requests: ...

    def names(self, role: str) -> list[str]: ...

    def is_ready(self, worker: str) -> bool: ...


class InferPlacement:
    """The stream -> infer worker table of the parent."""

    def __init__(self, workers: WorkerTable) -> None:
        self._workers = workers
        self._held: dict[str, str] = {}  # stream id -> infer worker name

    def assign(self, stream_id: str) -> str:
        """The infer worker that will serve ``stream_id`` (the one it has, if any)."""
        held = self._held.get(stream_id)
        if held is not None:
            return held
        counts = Counter(self._held.values())
        name = self._least_loaded(lambda worker: counts[worker])
        self._held[stream_id] = name
        log.info("stream %s: assigned to infer worker %s", stream_id, name)
        return name

    def release(self, stream_id: str) -> None:
        """Forget the stream (it ended)."""
        self._held.pop(stream_id, None)

    def worker_of(self, stream_id: str) -> str | None:
        """The infer worker holding ``stream_id``; None when it holds none."""
        return self._held.get(stream_id)

    def streams_on(self, worker: str) -> list[str]:
        """The streams ``worker`` holds."""
        return [stream_id for stream_id, name in self._held.items() if name == worker]

    def for_job(self) -> str:
        """The infer worker a one-shot job should run on."""
        counts = Counter(self._held.values())
        requests = self._workers.requests
        return self._least_loaded(lambda worker: counts[worker] + requests.in_flight(worker))

    def load(self) -> dict[str, int]:
        """Streams held by each infer worker (every worker listed, idle ones with 0)."""
        counts = Counter(self._held.values())
        return {name: counts[name] for name in self._workers.names(INFER)}

    def _least_loaded(self, load: _Load) -> str:
        names = self._workers.names(INFER)
        if not names:
            raise LookupError("this runner has no infer worker")
        ready = [name for name in names if self._workers.is_ready(name)] or names
        # names are in index order and min() keeps the first of equals: ties go to the lowest.
        return min(ready, key=load)


class _Load(Protocol):
    def __call__(self, worker: str, /) -> int: ...
