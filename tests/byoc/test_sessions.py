"""The session table: state machine, timestamps, ids, admission, retention and budgets."""

from __future__ import annotations

import time

import pytest

from byoc.sessions import (
    LIVE_STATES,
    TERMINAL_STATES,
    CapacityError,
    JobSlots,
    SessionState,
    SessionTable,
    TransitionError,
    new_session_id,
)

S = SessionState


def test_session_ids_are_128_bit_secrets() -> None:
    ids = {new_session_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_the_trickle_path_and_its_timestamps() -> None:
    table = SessionTable(capacity=2, retention_s=60)
    session = table.admit_stream("comfystream-video", "orch-id-1")
    assert session.id == "orch-id-1" and session.external_id
    assert session.state is S.STARTING
    assert session.transition(S.READY)
    assert session.transition(S.PROCESSING)
    assert session.transition(S.STOPPED, error=None)
    assert [state for state, _ in session.transitions] == [
        "starting",
        "ready",
        "processing",
        "stopped",
    ]
    times = [t for _, t in session.transitions]
    assert times == sorted(times)
    assert session.ended_at == times[-1]


def test_webrtc_sessions_go_to_connected_then_processing() -> None:
    table = SessionTable(capacity=2, retention_s=60)
    session = table.admit_stream("whip-ingest")
    assert session.transition(S.CONNECTED)
    assert session.transition(S.COMPLETED)
    other = table.admit_stream("whip-ingest")
    assert other.transition(S.CONNECTED)
    assert other.transition(S.PROCESSING)  # the first frame after the peer connected
    with pytest.raises(TransitionError):
        other.transition(S.CONNECTED)


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ([], S.PROCESSING),  # starting -> processing skips ready
        ([S.READY, S.PROCESSING], S.CONNECTED),
        ([S.READY, S.PROCESSING], S.READY),
        ([S.CONNECTED], S.READY),
        ([S.READY], S.STARTING),
    ],
)
def test_illegal_transitions_raise(path: list[SessionState], illegal: SessionState) -> None:
    session = SessionTable(4, 60).admit_stream("comfystream-video")
    for state in path:
        session.transition(state)
    with pytest.raises(TransitionError):
        session.transition(illegal)


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATES, key=lambda s: s.value))
def test_terminal_states_never_change(terminal: SessionState) -> None:
    session = SessionTable(4, 60).admit_stream("comfystream-video")
    session.transition(terminal, error="boom" if terminal is S.FAILED else None)
    for other in (*LIVE_STATES, *TERMINAL_STATES):
        assert session.transition(other) is False
        assert session.state is terminal


def test_failed_keeps_its_error_and_listeners_see_each_change() -> None:
    session = SessionTable(4, 60).admit_stream("comfystream-video")
    seen: list[str] = []
    session.listeners.append(lambda s: seen.append(s.state.value))
    session.transition(S.READY)
    session.transition(S.FAILED, error="decoder crashed")
    assert seen == ["ready", "failed"]
    assert session.status()["error"] == "decoder crashed"
    assert session.stats() == {
        "created_at": session.status()["created_at"],
        "capability": "comfystream-video",
        "status": "failed",
        "has_result": False,
        "has_error": True,
        "control_plane": "byoc",
    }


def test_capacity_counts_live_streams_only_and_ending_frees_the_slot() -> None:
    table = SessionTable(capacity=2, retention_s=60)
    a = table.admit_stream("comfystream-video", "a")
    table.admit_stream("comfystream-video", "b")
    for _ in range(5):
        table.add_job("text-reversal")  # jobs never take a stream slot
    with pytest.raises(CapacityError):
        table.admit_stream("comfystream-video", "c")
    assert table.get("a") is a and a.state is S.STARTING  # the running ones are untouched
    a.transition(S.STOPPED)
    table.admit_stream("comfystream-video", "c")
    assert table.live_streams() == 2


def test_replacing_a_live_id_does_not_need_a_free_slot() -> None:
    table = SessionTable(capacity=1, retention_s=60)
    old = table.admit_stream("comfystream-video", "s1")
    new = table.admit_stream("comfystream-video", "s1", replacing=True)
    assert new is not old and table.get("s1") is new
    with pytest.raises(CapacityError):
        table.admit_stream("comfystream-video", "s2")
    roomy = SessionTable(capacity=3, retention_s=60)
    roomy.admit_stream("comfystream-video", "s1")
    with pytest.raises(ValueError):  # a live id is only taken over when replacing
        roomy.admit_stream("comfystream-video", "s1")


def test_retention_and_sweep() -> None:
    table = SessionTable(capacity=4, retention_s=10)
    ended = table.add_job("text-reversal")
    ended.transition(S.COMPLETED)
    live = table.admit_stream("comfystream-video")
    assert table.sweep(now=time.time() + 5) == []
    assert table.sweep(now=time.time() + 11) == [ended.id]
    assert table.get(ended.id) is None and table.get(live.id) is live


def test_retained_sessions_and_results_are_bounded() -> None:
    table = SessionTable(capacity=4, retention_s=600, max_retained=5, result_budget_bytes=1000)
    live = table.admit_stream("comfystream-video")
    jobs = []
    for i in range(8):
        job = table.add_job("text-reversal")
        table.set_result(job, {"i": i})
        job.transition(S.COMPLETED)
        jobs.append(job)
    assert len(table) <= 6  # oldest ended dropped first; the live one stays
    assert table.get(live.id) is live
    assert table.get(jobs[-1].id) is jobs[-1]
    big = table.add_job("text-reversal")
    table.set_result(big, {"text": "x" * 600})
    big.transition(S.COMPLETED)
    other = table.add_job("text-reversal")
    table.set_result(other, {"text": "y" * 600})
    assert table.get(big.id) is None  # over the byte budget: the oldest ended result goes


def test_huge_results_are_not_kept() -> None:
    table = SessionTable(capacity=4, retention_s=600)
    job = table.add_job("text-reversal")
    table.set_result(job, {"text": "x" * (2 * 1024 * 1024)})
    assert "omitted" in job.result


def test_job_slots() -> None:
    slots = JobSlots(2)
    slots.acquire()
    slots.acquire()
    with pytest.raises(CapacityError):
        slots.acquire()
    slots.release()
    slots.acquire()
    assert slots.in_flight == 2


def test_reservations_held_outside_the_table_take_slots() -> None:
    table = SessionTable(2, 60)
    reserved = [1]
    table.held_outside = lambda: reserved[0]
    table.admit_stream("comfystream-video")
    with pytest.raises(CapacityError):
        table.admit_stream("comfystream-video")
    # The reservation's own stream takes the slot the reservation holds.
    stream = table.admit_stream(
        "comfystream-video", "session_a", reserved=True, control_plane="live-runner"
    )
    assert stream.status()["control_plane"] == "live-runner"
    assert stream.stats()["control_plane"] == "live-runner"
