"""Cross-process wake-ups without polling: Unix datagram sockets in Linux's abstract namespace.

A waiting process binds a ``WakeListener`` to a key (e.g. ``"<ring name>.r"``); a producer sends a
one-byte datagram to the same key with ``WakeSender.notify()`` after each write. Nothing has to be
handed from one process to another (both derive the address from the key), nothing is left on
disk, and the kernel frees the address when the listener's process dies, even by SIGKILL. A bound
key is also a lock: a second listener on it fails with ``AddressInUse``.

The listener's descriptor becomes readable when a datagram is queued, so a wait costs no CPU:
``wait(timeout)`` blocks in ``poll``; ``wait_async(timeout)`` uses the event loop's
``add_reader`` (asyncio or uvloop). Notifications are level-style hints, not messages: the
receiver drains them all with ``drain()`` *before* checking for work, so a notification sent while
it checks is not lost. A sender never blocks: when the listener's queue is full it is awake
anyway, and when no one listens there is no one to wake (both are ignored).

Linux only (the abstract namespace is a Linux feature).
"""

from __future__ import annotations

import asyncio
import errno
import select
import socket
import time

MAX_KEY_BYTES = 100
"""Longest key; the abstract address is the key after a NUL byte (sun_path holds 108)."""

_ADDRESS_PREFIX = b"\0cbyoc:"


class AddressInUse(RuntimeError):
    """Another process (or object) is already listening on this key."""


def abstract_address(key: str) -> bytes:
    """The abstract-namespace socket address of ``key``."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"wake-up key must be a non-empty string, got {key!r}")
    raw = key.encode()
    if len(raw) > MAX_KEY_BYTES:
        raise ValueError(f"wake-up key {key!r} is longer than {MAX_KEY_BYTES} bytes")
    return _ADDRESS_PREFIX + raw


def _dgram_socket() -> socket.socket:
    return socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)


class WakeListener:
    """The receiving end: a bound datagram socket whose readability means "look again"."""

    def __init__(self, key: str) -> None:
        self.key = key
        address = abstract_address(key)
        sock = _dgram_socket()
        try:
            sock.bind(address)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise AddressInUse(f"wake-up key {key!r} already has a listener") from None
            raise
        self._sock: socket.socket | None = sock
        self._poll = select.poll()
        self._poll.register(sock.fileno(), select.POLLIN)

    def fileno(self) -> int:
        """The descriptor to watch for readability (e.g. with ``loop.add_reader``)."""
        return self._socket().fileno()

    def drain(self) -> int:
        """Consume every pending notification; return how many there were."""
        sock = self._socket()
        count = 0
        while True:
            try:
                sock.recv(16)
            except (BlockingIOError, InterruptedError):
                return count
            count += 1

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a notification is pending or ``timeout`` seconds pass (``None``: forever).

        Returns whether one is pending. Does not consume it (call ``drain``).
        """
        self._socket()
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        while True:
            if deadline is None:
                wait_ms = None
            else:
                # Round up so a short timeout does not turn into a busy 0 ms poll.
                wait_ms = max(0, int((deadline - time.monotonic()) * 1000 + 0.999))
            if self._poll.poll(wait_ms):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False

    async def wait_async(self, timeout: float | None = None) -> bool:
        """Like ``wait`` but suspends the calling coroutine instead of blocking the loop."""
        fd = self.fileno()
        if self._poll.poll(0):
            return True
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def on_readable() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, on_readable)
        try:
            if timeout is None:
                await ready
            else:
                # Not ``asyncio.wait_for``: on Python 3.11 it swallows a cancellation that
                # arrives as the future completes, and a stream's stop then waits forever.
                async with asyncio.timeout(max(timeout, 0.0)):
                    await ready
        except TimeoutError:
            return False
        finally:
            loop.remove_reader(fd)
        return True

    def close(self) -> None:
        """Release the key (idempotent)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            self._poll.unregister(sock.fileno())
            sock.close()

    @property
    def closed(self) -> bool:
        return self._sock is None

    def _socket(self) -> socket.socket:
        if self._sock is None:
            raise ValueError(f"wake-up listener {self.key!r} is closed")
        return self._sock

    def __enter__(self) -> WakeListener:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class WakeSender:
    """The sending end: notifies whoever listens on ``key``, never blocking."""

    def __init__(self, key: str) -> None:
        self.key = key
        self._address = abstract_address(key)
        self._sock: socket.socket | None = _dgram_socket()

    def notify(self) -> bool:
        """Send one wake-up; return whether it was queued.

        ``False`` when no one listens (ECONNREFUSED) or the listener already has a full queue of
        unread wake-ups (EAGAIN): in neither case is there anyone left to wake.
        """
        if self._sock is None:
            raise ValueError(f"wake-up sender {self.key!r} is closed")
        try:
            self._sock.sendto(b"\x01", self._address)
        except (BlockingIOError, ConnectionRefusedError, FileNotFoundError, InterruptedError):
            return False
        return True

    def close(self) -> None:
        """Close the socket (idempotent)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def __enter__(self) -> WakeSender:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
