"""Child processes of the benchmark: started in their own session (so a Ctrl-C reaches them only
through our orderly shutdown), asked to die with us if we are killed, output to a log file, and
stopped with SIGTERM then SIGKILL."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import json
import logging
import os
import signal
import socket
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
MAX_LINE_BYTES = 256 * 1024 * 1024  # the source's records come back as one JSON line


def free_port() -> int:
    """A port the kernel just handed out as ephemeral on 127.0.0.1 (for programs that take a
    port number, not 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that asks Linux to SIGTERM the child when we die (None elsewhere)."""
    name = ctypes.util.find_library("c")
    if not name or not hasattr(os, "getppid"):
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return preexec


class ManagedProcess:
    """One child process (see the module docstring)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stdin: bool = False,
        stdout: bool = False,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.want_stdin = stdin
        self.want_stdout = stdout
        self.proc: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} not started"
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def _open_log(self) -> IO[bytes]:
        self._log = open(self.log_path, "ab")  # closed in stop()
        return self._log

    async def start(self) -> None:
        log_file = self._open_log()
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.PIPE if self.want_stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE if self.want_stdout else log_file,
                stderr=log_file,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=_die_with_parent(),
                limit=MAX_LINE_BYTES,
            )
        except BaseException:
            log_file.close()
            self._log = None
            raise
        log.debug("%s started (pid %d)", self.name, self.proc.pid)

    async def read_json_line(self, timeout: float) -> dict[str, object]:
        """The next stdout line as a JSON object (skipping non-JSON lines)."""
        assert self.proc is not None and self.proc.stdout is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"{self.name}: no answer within {timeout:g}s")
            try:
                line = await asyncio.wait_for(self.proc.stdout.readline(), remaining)
            except asyncio.TimeoutError:
                raise TimeoutError(f"{self.name}: no answer within {timeout:g}s") from None
            if not line:
                raise RuntimeError(f"{self.name} exited (see {self.log_path})")
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if isinstance(data, dict):
                return data

    async def write_json_line(self, document: object) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(document) + "\n").encode())
        await self.proc.stdin.drain()

    async def stop(self, timeout: float = 15.0, sig: int = signal.SIGTERM) -> int | None:
        """Signal the process, wait up to ``timeout``, then SIGKILL; return its exit status."""
        proc = self.proc
        try:
            if proc is not None and proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)
                try:
                    await asyncio.wait_for(proc.wait(), timeout)
                except asyncio.TimeoutError:
                    log.warning("%s did not stop within %gs: killing it", self.name, timeout)
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
            if proc is not None and proc.stdin is not None:
                proc.stdin.close()
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None
        return proc.returncode if proc is not None else None
