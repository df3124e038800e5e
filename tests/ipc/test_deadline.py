"""``ipc.deadline``: one deadline cuts every wait under it, in tasks created under it too."""

from __future__ import annotations

import asyncio

from ipc.deadline import MIN_WAIT_S, remaining, shared_deadline, within


def test_without_a_deadline_waits_keep_their_own_timeout() -> None:
    assert within(7.0) == 7.0
    assert remaining() is None


async def test_a_deadline_cuts_waits_and_reaches_tasks_created_under_it() -> None:
    with shared_deadline(2.0):
        assert within(0.5) == 0.5
        assert 1.0 < within(10.0) <= 2.0
        child = await asyncio.gather(asyncio.sleep(0, result=None), _within_in_task())
        assert child[1] <= 2.0
        with shared_deadline(60.0):  # an inner deadline never extends the outer one
            assert within(100.0) <= 2.0
    assert within(10.0) == 10.0


async def _within_in_task() -> float:
    return within(10.0)


def test_past_the_deadline_a_wait_still_gets_a_moment() -> None:
    with shared_deadline(0.0):
        assert within(10.0) == MIN_WAIT_S
        assert remaining() == 0.0
