"""``comfystream-byoc`` commands as real subprocesses for the tests: start one, wait until it
answers, stop it with Ctrl-C (killed, and the test failed, when it does not stop in time)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SCRIPT = Path(sys.executable).parent / "comfystream-byoc"
FAST_ENV = {
    "HEARTBEAT_INTERVAL": "0.2",
    "HEARTBEAT_TIMEOUT": "2",
    "RESTART_BACKOFF": "0.1",
    "RESTART_BACKOFF_MAX": "0.5",
}
STOP_TIMEOUT_S = 30.0
"""Hang guard for a process asked to stop, not a figure."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Any, timeout: float = 60.0) -> Any:
    """Poll ``check`` until it returns something true (``timeout`` is a hang guard)."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (OSError, AssertionError) as exc:
            last_error = exc
        time.sleep(0.1)
    raise AssertionError(f"timed out: {last_error}")


def serve_args(port: int, workspace: Path, *extra: str) -> list[str]:
    """``serve`` on 127.0.0.1:``port`` with its own workspace and state directory."""
    return [
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workspace",
        str(workspace),
        "--state-dir",
        str(workspace / "state"),
        *extra,
    ]


def interrupt(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT_S) -> int:
    """Ctrl-C (unless it already exited) and its exit status; a process that does not stop in
    ``timeout`` is killed and ``TimeoutExpired`` raised."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


@contextlib.contextmanager
def cli_process(*args: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """``comfystream-byoc ARGS`` in a subprocess (output discarded, ``FAST_ENV`` unless ``env``
    is given), interrupted on exit."""
    proc = subprocess.Popen(
        [str(SCRIPT), *args],
        env=env if env is not None else {**os.environ, **FAST_ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        interrupt(proc)
