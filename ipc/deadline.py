"""One deadline shared by every wait on the way out.

A shutdown closes many things that each have their own timeout (a final event, a trickle
``DELETE``, in-flight segment posts, worker exits). Summed, those timeouts are far longer than
``--shutdown-timeout``. ``shared_deadline`` sets one deadline for the current task and every
task it creates; ``within(default)`` is the timeout a wait may use under it: its own default,
or what is left of the deadline, whichever is shorter. Outside a ``shared_deadline`` it is
``default``.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator

MIN_WAIT_S = 0.05
"""Even past the deadline a wait gets this long: closing a socket still takes a moment."""

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "shutdown_deadline", default=None
)


@contextlib.contextmanager
def shared_deadline(seconds: float) -> Iterator[float]:
    """Every ``within`` in this context (and in tasks created in it) ends by ``seconds`` from
    now; yields the deadline (``time.monotonic()`` clock)."""
    deadline = time.monotonic() + seconds
    current = _deadline.get()
    if current is not None:
        deadline = min(deadline, current)
    token = _deadline.set(deadline)
    try:
        yield deadline
    finally:
        _deadline.reset(token)


def within(default: float) -> float:
    """The timeout for one wait: ``default``, cut to what is left of the shared deadline."""
    deadline = _deadline.get()
    if deadline is None:
        return default
    return max(MIN_WAIT_S, min(default, deadline - time.monotonic()))


def remaining() -> float | None:
    """Seconds left of the shared deadline (``None`` without one)."""
    deadline = _deadline.get()
    return None if deadline is None else max(0.0, deadline - time.monotonic())
