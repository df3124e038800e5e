"""Count how often a process asks the kernel to wait, to show that an idle wait does not spin.

A CPU-time threshold would be a timing test (it fails on a loaded machine). The property we want
is structural: while nothing happens, a waiter makes one blocking call (or a handful, for an event
loop's bookkeeping) instead of one per millisecond. These wrappers count the calls, in the child
process that waits, without changing what they do.
"""

from __future__ import annotations

import asyncio
import select
import selectors
from pathlib import Path
from typing import Any

# A correct idle wait of any length makes one blocking poll (blocking waiter) or a few selector
# calls (event loop); a waiter that polls or spins makes hundreds per second.
MAX_IDLE_WAITS = 10


class _Counter:
    calls = 0


class CountingPoll:
    """A ``select.poll`` object that counts its ``poll()`` calls in ``_Counter.calls``."""

    def __init__(self) -> None:
        self._poll = _real_poll()

    def register(self, fd: Any, eventmask: int = select.POLLIN | select.POLLPRI) -> None:
        self._poll.register(fd, eventmask)

    def unregister(self, fd: Any) -> None:
        self._poll.unregister(fd)

    def poll(self, timeout: float | None = None) -> list[tuple[int, int]]:
        _Counter.calls += 1
        return self._poll.poll(timeout)


class CountingSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """The default selector, counting its ``select()`` calls in ``_Counter.calls``."""

    def select(self, timeout: float | None = None) -> list[Any]:
        _Counter.calls += 1
        return super().select(timeout)


_real_poll = select.poll


def count_waits() -> None:
    """From now on, count every ``poll`` made through ``select.poll()`` objects created later."""
    select.poll = CountingPoll  # type: ignore[assignment]
    _Counter.calls = 0


def waits_counted() -> int:
    """Calls counted since ``count_waits()``."""
    return _Counter.calls


def counting_event_loop() -> asyncio.AbstractEventLoop:
    """A new asyncio loop whose selector counts its calls (``asyncio.run`` cannot take one)."""
    return asyncio.SelectorEventLoop(CountingSelector())


def sleeping_in_poll(pid: int) -> bool:
    """Whether process ``pid``'s main thread is asleep in ``poll``/``select``/``epoll_wait``."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        wchan = Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return False
    return state == "S" and ("poll" in wchan or "select" in wchan)
