"""The ``register`` and ``orchestrator`` commands, ``serve --with-orchestrator`` (what
``make serve`` runs) and unregistering on SIGTERM, as real processes of the console script."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from byoc.livepeer.standin.orchestrator import LocalOrchestrator

SCRIPT = Path(sys.executable).parent / "comfystream-byoc"
FAST_ENV = {"HEARTBEAT_INTERVAL": "0.2", "HEARTBEAT_TIMEOUT": "2", "LOG_LEVEL": "INFO"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def env_with(**values: str) -> dict[str, str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ORCH_URL", "ORCH_SECRET", "CAPABILITY_TOKEN")
    }
    return {**base, **FAST_ENV, **values}


def http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def wait_for(check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("timed out")


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGINT) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


async def test_register_command_exit_codes(tmp_path: Path) -> None:
    orch = LocalOrchestrator(secret="sekret")
    await orch.start()
    try:

        async def run(**env: str) -> subprocess.CompletedProcess[str]:
            return await asyncio.to_thread(
                subprocess.run,
                [str(SCRIPT), "register", "--workspace", str(tmp_path)],
                capture_output=True,
                text=True,
                timeout=60,
                env=env_with(**env),
            )

        ok = await run(
            ORCH_URL=orch.url, ORCH_SECRET="sekret", CAPABILITY_URL="http://10.0.0.5:8889"
        )
        assert ok.returncode == 0, ok.stderr
        assert {c.url for c in orch.registry.capabilities.values()} == {"http://10.0.0.5:8889"}
        wrong = await run(ORCH_URL=orch.url, ORCH_SECRET="nope")
        assert wrong.returncode == 1
        assert "invalid authorization" in wrong.stderr and "ORCH_SECRET" in wrong.stderr
        dead = await run(ORCH_URL=f"http://127.0.0.1:{free_port()}", ORCH_SECRET="x")
        assert dead.returncode == 1 and "unreachable" in dead.stderr
        missing = await run()
        assert missing.returncode == 2 and "ORCH_URL" in missing.stderr
    finally:
        await orch.close()


@pytest.fixture
def standalone_orchestrator() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    proc = subprocess.Popen(
        [str(SCRIPT), "orchestrator", "--host", "127.0.0.1", "--port", str(port), "--secret", "s"],
        env=env_with(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert f"ready at http://127.0.0.1:{port}" in line
        yield proc, port
    finally:
        stop_process(proc)
        if proc.stdout is not None:
            proc.stdout.close()


def test_orchestrator_command_serves_and_stops(
    standalone_orchestrator: tuple[subprocess.Popen[bytes], int],
) -> None:
    proc, port = standalone_orchestrator
    body = json.dumps({"name": "x", "url": "http://127.0.0.1:1", "capacity": 1}).encode()
    status, headers, text = http(
        "POST", f"http://127.0.0.1:{port}/capability/register", body, {"Authorization": "s"}
    )
    assert (status, text, headers["Content-Type"]) == (200, b"ok", "application/json")
    status, _, text = http(
        "POST", f"http://127.0.0.1:{port}/capability/register", body, {"Authorization": "bad"}
    )
    assert (status, text) == (400, b"invalid authorization\n")
    status, _, _ = http("GET", f"http://127.0.0.1:{port}/capability/register")
    assert status == 405
    assert stop_process(proc) == 0


def test_serve_with_orchestrator_runs_the_readme_flow_and_unregisters_on_sigterm(
    tmp_path: Path,
) -> None:
    port, orch_port = free_port(), free_port()
    proc = subprocess.Popen(
        [
            str(SCRIPT),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--with-orchestrator",
            "--orchestrator-port",
            str(orch_port),
            "--workspace",
            str(tmp_path),
            "--state-dir",
            str(tmp_path / "state"),
        ],
        env=env_with(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    runner, orch = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{orch_port}"
    try:
        wait_for(lambda: json.loads(http("GET", runner + "/health")[2])["status"] == "healthy")
        header = base64.b64encode(
            json.dumps(
                {
                    "request": "{}",
                    "parameters": "{}",
                    "capability": "text-reversal",
                    "timeout_seconds": 30,
                }
            ).encode()
        ).decode()

        def job() -> tuple[int, dict[str, str], bytes]:
            return http(
                "POST",
                orch + "/process/request/text-reversal",
                b'{"text": "hello"}',
                {"Livepeer": header, "Content-Type": "application/json"},
            )

        status, headers, body = wait_for(lambda: (r := job())[0] == 200 and r)  # registered by now
        assert json.loads(body) == {"original": "hello", "reversed": "olleh"}
        session_id = json.loads(headers["X-Metadata"])["session_id"]
        status, _, body = http("GET", f"{runner}/byoc/session/{session_id}/status")
        assert status == 200 and json.loads(body)["status"] == "completed"
        status, _, body = http("GET", runner + "/byoc-stats")
        assert json.loads(body)[session_id]["has_result"] is True
        assert stop_process(proc, signal.SIGTERM) == 0
        assert proc.stderr is not None
        log = proc.stderr.read().decode()
        for name in ("text-reversal", "comfystream-image", "comfystream-video"):
            assert f"unregistered {name} from {orch}" in log
    finally:
        stop_process(proc)
        if proc.stderr is not None:
            proc.stderr.close()
