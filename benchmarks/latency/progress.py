"""One status line on stderr, rewritten in place while the benchmark runs."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``update(text)`` rewrites the line (at most every ``min_interval_s`` on a terminal; every
    ``pipe_interval_s`` as a new line when stderr is not a terminal); ``done(text)`` ends it."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        enabled: bool = True,
        min_interval_s: float = 0.2,
        pipe_interval_s: float = 10.0,
    ) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = min_interval_s if self.tty else pipe_interval_s
        self._last = 0.0
        self._width = 0

    def update(self, text: str, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        if self.tty:
            pad = max(0, self._width - len(text))
            self.stream.write("\r" + text + " " * pad)
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def done(self, text: str) -> None:
        """Replace the line with ``text`` and move on to a new line."""
        if not self.enabled:
            return
        if self.tty:
            pad = max(0, self._width - len(text))
            self.stream.write("\r" + text + " " * pad + "\n")
        else:
            self.stream.write(text + "\n")
        self._width = 0
        self._last = 0.0
        self.stream.flush()
