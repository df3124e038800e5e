"""Wake-ups through abstract Unix datagram sockets, across real processes."""

from __future__ import annotations

import asyncio
import multiprocessing
import secrets
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

import pytest

from ipc.wakeup import MAX_KEY_BYTES, AddressInUse, WakeListener, WakeSender
from tests.ipc import os_waits

CTX = multiprocessing.get_context("spawn")


def key() -> str:
    return f"test-wake-{secrets.token_hex(6)}"


def notify_later(wake_key: str, delay: float, conn: Connection) -> None:
    """(child) Notify ``wake_key`` after ``delay`` seconds; report whether it was queued."""
    time.sleep(delay)
    with WakeSender(wake_key) as sender:
        conn.send(sender.notify())


def idle_listener(wake_key: str, use_async: bool, seconds: float, conn: Connection) -> None:
    """(child) Wait ``seconds`` with nothing sent; report (woke, kernel waits made)."""
    os_waits.count_waits()
    with WakeListener(wake_key) as listener:
        loop = os_waits.counting_event_loop() if use_async else None
        start = os_waits.waits_counted()
        if loop is not None:
            woke = loop.run_until_complete(listener.wait_async(seconds))
            loop.close()
        else:
            woke = listener.wait(seconds)
        conn.send((woke, os_waits.waits_counted() - start))


def run_child(
    target: Callable[..., None], *args: object
) -> tuple[multiprocessing.process.BaseProcess, Connection]:
    parent_end, child_end = CTX.Pipe()
    process = CTX.Process(target=target, args=(*args, child_end), daemon=True)
    process.start()
    child_end.close()
    return process, parent_end


def test_notify_without_listener_is_harmless() -> None:
    with WakeSender(key()) as sender:
        assert sender.notify() is False


def test_listener_sees_notifications_and_drains_them() -> None:
    wake_key = key()
    with WakeListener(wake_key) as listener, WakeSender(wake_key) as sender:
        assert listener.wait(0) is False
        assert listener.wait(0.05) is False
        assert sender.notify() and sender.notify() and sender.notify()
        assert listener.wait(5) is True
        assert listener.wait(None) is True  # still pending: wait does not consume
        assert listener.drain() == 3
        assert listener.drain() == 0
        assert listener.wait(0.01) is False


def test_full_queue_never_blocks_the_sender() -> None:
    wake_key = key()
    with WakeListener(wake_key) as listener, WakeSender(wake_key) as sender:
        results = [sender.notify() for _ in range(500)]
        queued = sum(results)
        assert 0 < queued < 500  # the kernel queue is bounded; the rest were refused, not blocked
        assert listener.drain() == queued


def test_one_listener_per_key_and_key_is_freed_on_close() -> None:
    wake_key = key()
    first = WakeListener(wake_key)
    with pytest.raises(AddressInUse, match="already has a listener"):
        WakeListener(wake_key)
    first.close()
    first.close()
    assert first.closed
    with pytest.raises(ValueError, match="closed"):
        first.drain()
    with WakeListener(wake_key) as second:
        assert not second.closed


@pytest.mark.parametrize("bad", ["", "k" * (MAX_KEY_BYTES + 1)])
def test_invalid_keys(bad: str) -> None:
    with pytest.raises(ValueError, match="wake-up key"):
        WakeListener(bad)


def test_another_process_wakes_a_blocked_listener() -> None:
    wake_key = key()
    with WakeListener(wake_key) as listener:
        process, conn = run_child(notify_later, wake_key, 0.3)
        assert listener.wait(60) is True
        assert conn.recv() is True
        process.join(30)
        assert listener.drain() == 1


async def test_another_process_wakes_an_async_listener() -> None:
    wake_key = key()
    with WakeListener(wake_key) as listener:
        process, conn = run_child(notify_later, wake_key, 0.3)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        try:
            assert await listener.wait_async(60) is True
        finally:
            task.cancel()
        assert ticks > 0  # the loop kept running while we waited
        assert conn.recv() is True
        process.join(30)
        assert await listener.wait_async(0) is True
        listener.drain()
        assert await listener.wait_async(0.05) is False


@pytest.mark.parametrize("use_async", [False, True], ids=["blocking", "asyncio"])
def test_idle_wait_sleeps_in_the_kernel(use_async: bool) -> None:
    """Waiting with nothing sent is one blocking call (a few for an event loop), not polling."""
    process, conn = run_child(idle_listener, key(), use_async, 1.0)
    assert conn.poll(60)
    woke, kernel_waits = conn.recv()
    process.join(30)
    assert woke is False
    assert 1 <= kernel_waits <= os_waits.MAX_IDLE_WAITS
