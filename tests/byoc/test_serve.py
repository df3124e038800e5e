"""``comfystream-byoc serve`` as a real process: named workers, restarts seen in /health,
Ctrl-C leaves nothing behind, and the parent never imports torch."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.byoc.cli_process import (
    FAST_ENV,
    SCRIPT,
    cli_process,
    free_port,
    serve_args,
    wait_for,
)


def get_health(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=30) as response:
        assert response.status == 200
        return dict(json.load(response))


def children_of(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def process_gone(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().split(")")[-1].split()[0] == "Z"


@contextlib.contextmanager
def serving(workspace: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``comfystream-byoc serve`` as a subprocess, healthy, stopped with Ctrl-C afterwards."""
    port = free_port()
    with cli_process(*serve_args(port, workspace)) as proc:
        wait_for(lambda: get_health(port)["status"] == "healthy")
        yield proc, port


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    with serving(tmp_path) as running:
        yield running


def test_health_shape_and_named_workers(runner: tuple[subprocess.Popen[bytes], int]) -> None:
    proc, port = runner
    health = get_health(port)
    assert health["status"] == "healthy"
    assert health["active_streams"] == 0
    assert health["timestamp"].endswith("Z")
    assert set(health["workers"]) == {"ingest", "infer", "egress"}
    titles = {
        Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        for pid in children_of(proc.pid)
    }
    assert {
        "comfystream-byoc: ingest",
        "comfystream-byoc: infer",
        "comfystream-byoc: egress",
    } <= titles


@pytest.mark.parametrize("worker", ["ingest", "infer", "egress"])
def test_kill_9_of_a_worker_shows_as_a_restart(
    runner: tuple[subprocess.Popen[bytes], int], worker: str
) -> None:
    _, port = runner
    old_pid = get_health(port)["workers"][worker]["pid"]
    os.kill(old_pid, signal.SIGKILL)
    health = wait_for(
        lambda: (
            (h := get_health(port))["workers"][worker]["restarts"] == 1
            and h["workers"][worker]["state"] == "ready"
            and h
        )
    )
    assert health["workers"][worker]["pid"] != old_pid
    assert health["status"] == "healthy"


def test_ctrl_c_stops_everything_and_exits_0(runner: tuple[subprocess.Popen[bytes], int]) -> None:
    proc, _ = runner
    workers = children_of(proc.pid)
    assert len(workers) >= 3
    proc.send_signal(signal.SIGINT)
    assert proc.wait(20) == 0
    for pid in workers:
        wait_for(lambda pid=pid: process_gone(pid), timeout=60)


def test_sigterm_also_exits_0(runner: tuple[subprocess.Popen[bytes], int]) -> None:
    proc, _ = runner
    workers = children_of(proc.pid)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    for pid in workers:
        wait_for(lambda pid=pid: process_gone(pid), timeout=60)


PARENT_IMPORTS = """
import asyncio, json, sys
from byoc.serve import serve
from byoc.settings import Settings

async def main():
    ready = asyncio.Event()
    task = asyncio.create_task(serve(Settings(host="127.0.0.1", port={port}, state_dir=None), ready=ready))
    await ready.wait()
    print(json.dumps(sorted(sys.modules)), flush=True)
    import os, signal
    os.kill(os.getpid(), signal.SIGINT)
    await task

asyncio.run(main())
"""


def test_parent_never_imports_torch() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PARENT_IMPORTS.replace("{port}", str(free_port()))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    modules = json.loads(result.stdout.strip().splitlines()[-1])
    assert "torch" not in modules
    assert "byoc.app" in modules


def test_start_removes_rings_left_by_a_dead_runner(tmp_path: Path) -> None:
    import _posixshmem

    dead = subprocess.Popen(["true"])
    dead.wait()
    name = f"cbyoc-{dead.pid}-deadbeef-in"
    fd = _posixshmem.shm_open(f"/{name}", os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    try:
        with serving(tmp_path) as (proc, _):
            assert not Path("/dev/shm", name).exists()
            proc.send_signal(signal.SIGINT)
            assert proc.wait(20) == 0
    finally:
        if Path("/dev/shm", name).exists():
            _posixshmem.shm_unlink(f"/{name}")


class SilentServer:
    """A TCP server that accepts connections and never answers (a hung trickle server)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = int(self.sock.getsockname()[1])
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


def test_sigterm_keeps_the_shutdown_deadline_when_the_trickle_server_hangs(
    tmp_path: Path,
) -> None:
    """It took 20.6 s to exit with --shutdown-timeout 5: a 10 s DELETE, 5 s of in-flight event
    posts, then publishers closed one at a time. Every wait now shares the one deadline."""
    silent = SilentServer()
    port = free_port()
    proc = subprocess.Popen(
        [
            str(SCRIPT),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workspace",
            str(tmp_path),
            "--shutdown-timeout",
            "1",
            "--drain-timeout",  # SIGTERM drains first; the stream never ends by itself here
            "0.5",
        ],
        env={**os.environ, **FAST_ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: get_health(port)["status"] == "healthy")
        base = f"http://127.0.0.1:{silent.port}/ai/trickle/hang"
        body = json.dumps(
            {
                "gateway_request_id": "hang",
                "control_url": base + "-control",
                "events_url": base + "-events",
                "subscribe_url": base,
                "publish_url": base + "-out",
                "data_url": base + "-data",
                "params": None,
            }
        ).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/stream/start", data=body, method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
        # The stream's clients are connected to the silent server and waiting on it.
        wait_for(lambda: len(silent.accepted) >= 3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0  # 30 s: a hang guard, not a figure
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        silent.close()


def test_a_second_runner_on_the_same_state_dir_exits_2(tmp_path: Path) -> None:
    with serving(tmp_path) as (proc, _):
        second = subprocess.run(
            [
                str(SCRIPT),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(free_port()),
                "--workspace",
                str(tmp_path),
                "--state-dir",
                str(tmp_path / "state"),
            ],
            env={**os.environ, **FAST_ENV},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 2, second.stderr
        assert f"state directory {tmp_path / 'state'} is in use by another runner" in second.stderr
        assert f"pid {proc.pid}" in second.stderr
        assert proc.poll() is None  # the first one is untouched
