"""Capacity shared by the two control planes: what a Live Runner heartbeat advertises and what
the session table still admits, for BYOC streams, reservations and their streams."""

from __future__ import annotations

import pytest

from byoc.live_runner.capacity import SharedCapacity
from byoc.live_runner.sessions import ActiveSessions
from byoc.sessions import CapacityError, SessionState, SessionTable


def shared(capacity: int) -> tuple[SessionTable, ActiveSessions, SharedCapacity]:
    table = SessionTable(capacity, 60)
    active = ActiveSessions()
    slots = SharedCapacity(table, active)
    table.held_outside = slots.reserved_without_stream
    return table, active, slots


def test_two_byoc_and_two_live_runner_fill_four() -> None:
    table, active, slots = shared(4)
    table.admit_stream("comfystream-video", "b1")
    table.admit_stream("comfystream-video", "b2")
    assert slots.heartbeat_capacity() == 2  # nothing held, two free
    active.reserve("s1", "o", slotted=True)
    active.reserve("s2", "o", slotted=True)
    assert slots.free() == 0 and slots.heartbeat_capacity() == 2  # two held, none free
    with pytest.raises(CapacityError):
        table.admit_stream("comfystream-video", "b3")
    # The reservations' own streams take the slots they hold.
    table.admit_stream("comfystream-video", "s1", reserved=True, control_plane="live-runner")
    table.admit_stream("comfystream-video", "s2", reserved=True, control_plane="live-runner")
    assert table.live_streams() == 4 and slots.in_use() == 4


def test_a_released_reservation_frees_its_slot() -> None:
    table, active, slots = shared(1)
    active.reserve("s1", "o", slotted=True)
    with pytest.raises(CapacityError):
        table.admit_stream("comfystream-video", "b1")
    active.release("s1")
    assert slots.free() == 1
    table.admit_stream("comfystream-video", "b1")


def test_full_runner_advertises_zero_and_unslotted_reservations_hold_nothing() -> None:
    table, active, slots = shared(1)
    stream = table.admit_stream("comfystream-video", "b1")
    assert slots.heartbeat_capacity() == 0
    active.reserve("late", "o", slotted=False)
    assert slots.heartbeat_capacity() == 0 and slots.in_use() == 1
    stream.transition(SessionState.STOPPED)
    assert slots.free() == 1


def test_idle_sessions_and_pinned_tokens() -> None:
    active = ActiveSessions()
    held = active.reserve("s1", "o", slotted=True)
    assert active.reserve("s1", "other", slotted=False) is held  # a repeat changes nothing
    assert not held.token_matches("anything")  # nothing pinned yet
    held.token = "t"
    assert held.token_matches("t") and not held.token_matches("u")
    assert active.idle(60.0, now=held.last_activity + 59) == []
    assert active.idle(60.0, now=held.last_activity + 60) == [held]
    assert active.ids("o") == ("s1",) and active.ids("other") == ()
