"""Which infer worker a stream or a job goes to: the least loaded, ties to the lowest index,
a ready one when there is one. (A table stands in for the supervisor: placement only reads
names, readiness and requests in flight; the real processes are in tests/e2e.)"""

from __future__ import annotations

from dataclasses import dataclass, field

from byoc.infer_placement import InferPlacement


@dataclass
class Requests:
    pending: dict[str, int] = field(default_factory=dict)

    def in_flight(self, worker: str | None = None) -> int:
        return self.pending.get(worker or "", 0)


@dataclass
class Table:
    infer: list[str]
    down: set[str] = field(default_factory=set)
    requests: Requests = field(default_factory=Requests)

    def names(self, role: str) -> list[str]:
        return list(self.infer) if role == "infer" else [role]

    def is_ready(self, worker: str) -> bool:
        return worker not in self.down


def test_streams_alternate_between_two_workers() -> None:
    placement = InferPlacement(Table(["infer-0", "infer-1"]))
    assigned = [placement.assign(f"s{i}") for i in range(4)]
    assert assigned == ["infer-0", "infer-1", "infer-0", "infer-1"]
    assert placement.load() == {"infer-0": 2, "infer-1": 2}
    assert placement.assign("s1") == "infer-1"  # a stream keeps its worker
    assert sorted(placement.streams_on("infer-1")) == ["s1", "s3"]


def test_a_released_slot_is_filled_first() -> None:
    placement = InferPlacement(Table(["infer-0", "infer-1", "infer-2"]))
    for i in range(6):
        placement.assign(f"s{i}")
    placement.release("s4")  # held by infer-1
    assert placement.worker_of("s4") is None
    assert placement.assign("new") == "infer-1"


def test_a_restarting_worker_gets_no_new_stream_while_another_is_ready() -> None:
    table = Table(["infer-0", "infer-1"])
    placement = InferPlacement(table)
    placement.assign("a")  # infer-0
    table.down.add("infer-1")
    assert placement.assign("b") == "infer-0"
    table.down.add("infer-0")  # none ready: the least loaded, the caller waits or answers 503
    assert placement.assign("c") == "infer-1"


def test_jobs_count_streams_and_jobs_in_flight_and_avoid_dead_workers() -> None:
    table = Table(["infer-0", "infer-1"])
    placement = InferPlacement(table)
    placement.assign("a")  # infer-0 holds a stream
    assert placement.for_job() == "infer-1"
    table.requests.pending["infer-1"] = 2
    assert placement.for_job() == "infer-0"
    table.down.add("infer-0")
    assert placement.for_job() == "infer-1"


def test_one_worker_takes_everything() -> None:
    placement = InferPlacement(Table(["infer"]))
    assert {placement.assign(f"s{i}") for i in range(3)} == {"infer"}
    assert placement.for_job() == "infer"
