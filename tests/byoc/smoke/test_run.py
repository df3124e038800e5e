"""``comfystream-byoc smoke`` as operators run it: a real ``serve --with-orchestrator`` in a
subprocess, the smoke command in another, through the orchestrator and straight to the runner;
and the non-zero exits when nothing comes back."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest
from aiohttp import web

from byoc.smoke.pattern import COUNTER_MODULO, read_frame_counter
from byoc.smoke.run import WorkflowFileError, load_workflow
from tests.byoc.cli_process import (
    FAST_ENV,
    SCRIPT,
    cli_process,
    free_port,
    interrupt,
    serve_args,
    wait_for,
)
from tests.byoc.test_serve import PARENT_IMPORTS, get_health

INVERT = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "frame.png"}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "out"}},
}
HANG_GUARD_S = 180


def smoke(*args: str) -> tuple[int, str, str]:
    """Run the smoke command; its exit code, stdout and stderr."""
    result = subprocess.run(
        [str(SCRIPT), "smoke", *args],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
        env={k: v for k, v in os.environ.items() if k != "CAPABILITY_TOKEN"},
    )
    return result.returncode, result.stdout, result.stderr


def registered(port: int) -> bool:
    orchestrators = get_health(port).get("orchestrators", {})
    return get_health(port)["status"] == "healthy" and any(
        o.get("state") == "registered" for o in orchestrators.values()
    )


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    """``serve --with-orchestrator`` (built-in engine), healthy and registered."""
    port, orch_port = free_port(), free_port()
    workspace = tmp_path_factory.mktemp("workspace")
    args = serve_args(port, workspace, "--engine", "builtin", "--with-orchestrator")
    with cli_process(*args, "--orchestrator-port", str(orch_port)) as proc:
        wait_for(lambda: registered(port), timeout=120)
        yield port, orch_port
        assert interrupt(proc) == 0


def test_smoke_through_the_orchestrator_with_a_workflow(
    deployment: tuple[int, int], tmp_path: Path
) -> None:
    _, orch_port = deployment
    workflow = tmp_path / "invert.json"
    workflow.write_text(json.dumps(INVERT))
    out = tmp_path / "out.mp4"
    code, stdout, stderr = smoke(
        "--orch-url",
        f"http://127.0.0.1:{orch_port}",
        "--seconds",
        "3",
        "--width",
        "320",
        "--height",
        "240",
        "--workflow",
        str(workflow),
        "--out",
        str(out),
        "--json",
    )
    assert code == 0, stderr
    report = json.loads(stdout)
    assert report["ok"] is True
    assert report["frames_in"] == 90
    assert 0 < report["frames_out"] <= report["frames_in"]
    assert report["frames_identified"] > 0
    assert report["latency_ms"]["p50"] is not None
    assert report["first_frame_ms"] is not None
    assert report["output_size"] == "320x240"
    assert report["last_event"]["state"] in ("starting", "processing")
    # The written video holds the processed (inverted) pictures.
    with av.open(str(out)) as container:
        first = next(container.decode(video=0))
    assert (first.width, first.height) == (320, 240)
    shown = read_frame_counter(first)
    assert shown is not None and shown > COUNTER_MODULO // 2  # inverted: early frames read high


def test_health_command_passes_on_the_deployment(deployment: tuple[int, int]) -> None:
    port, _ = deployment
    result = subprocess.run(
        [str(SCRIPT), "health", "--url", f"http://127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() in ("healthy", "degraded")


def test_smoke_straight_to_the_runner_prints_the_figures(deployment: tuple[int, int]) -> None:
    port, _ = deployment
    code, stdout, stderr = smoke("--runner-url", f"http://127.0.0.1:{port}", "--seconds", "2")
    assert code == 0, stderr
    assert "frames in        60" in stdout
    assert "glass-to-glass   p50" in stdout
    assert "result           OK" in stdout


def test_smoke_through_an_https_orchestrator_with_a_self_signed_certificate(
    tmp_path: Path,
) -> None:
    """As against go-livepeer: the orchestrator serves HTTPS with its own certificate, the
    runner registers with it over HTTPS, and the trickle channels are HTTPS too."""
    orch_port, port = free_port(), free_port()
    env = {**os.environ, **FAST_ENV, "ORCH_SECRET": "s3cret"}
    orchestrator_args = ["orchestrator", "--host", "127.0.0.1", "--port", str(orch_port), "--tls"]
    runner_args = serve_args(
        port,
        tmp_path,
        "--engine",
        "builtin",
        "--orch-url",
        f"https://127.0.0.1:{orch_port}",
        "--capability-url",
        f"http://127.0.0.1:{port}",
    )
    with cli_process(*orchestrator_args, env=env), cli_process(*runner_args, env=env):
        wait_for(lambda: registered(port), timeout=120)
        code, stdout, stderr = smoke(
            "--orch-url", f"https://127.0.0.1:{orch_port}", "--seconds", "2", "--json"
        )
        assert code == 0, stderr
        report = json.loads(stdout)
        assert report["frames_out"] > 0 and report["frames_identified"] > 0


def test_smoke_fails_for_a_capability_the_orchestrator_does_not_have(
    deployment: tuple[int, int],
) -> None:
    _, orch_port = deployment
    code, stdout, _ = smoke(
        "--orch-url", f"http://127.0.0.1:{orch_port}", "--capability", "nope", "--seconds", "1"
    )
    assert code == 1
    assert "stream start failed: HTTP 400" in stdout
    assert "FAILED: no frames came back" in stdout


def test_smoke_fails_when_no_runner_listens() -> None:
    code, stdout, _ = smoke("--runner-url", f"http://127.0.0.1:{free_port()}", "--seconds", "1")
    assert code == 1
    assert "stream start failed" in stdout


async def test_smoke_fails_when_a_started_stream_sends_nothing_back() -> None:
    """A runner whose media path is broken: it accepts ``/stream/start`` (a real HTTP server on
    a real socket) and never publishes a segment. Smoke must wait, then exit 1."""
    calls: list[str] = []

    async def accept(request: web.Request) -> web.Response:
        calls.append(request.path)
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/stream/start", accept)
    app.router.add_post("/stream/stop", accept)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        proc = await asyncio.create_subprocess_exec(
            str(SCRIPT),
            "smoke",
            "--runner-url",
            f"http://127.0.0.1:{port}",
            "--seconds",
            "1",
            "--wait",
            "2",
            "--json",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(proc.communicate(), HANG_GUARD_S)
    finally:
        await runner.cleanup()
    assert proc.returncode == 1, stderr.decode()
    report: dict[str, Any] = json.loads(stdout)
    assert report["ok"] is False
    assert report["frames_in"] == 30
    assert report["frames_out"] == 0
    assert calls == ["/stream/start", "/stream/stop"]


@pytest.mark.parametrize(
    "args",
    [
        ["--fps", "0"],
        ["--seconds", "-1"],
        ["--width", "101"],
        ["--workflow", "/nonexistent/workflow.json"],
    ],
)
def test_bad_arguments_exit_2(args: list[str]) -> None:
    code, _, stderr = smoke(*args)
    assert code == 2
    assert "comfystream-byoc: error:" in stderr


def test_workflow_files_become_stream_params(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    path.write_text(json.dumps(INVERT))
    assert load_workflow(str(path)) == {"workflow": INVERT}
    path.write_text(json.dumps({"prompts": [INVERT]}))
    assert load_workflow(str(path)) == {"prompts": [INVERT]}
    path.write_text(json.dumps([INVERT]))
    assert load_workflow(str(path)) == {"prompts": [INVERT]}
    path.write_text("[not json")
    with pytest.raises(WorkflowFileError):
        load_workflow(str(path))
    path.write_text("{}")
    with pytest.raises(WorkflowFileError):
        load_workflow(str(path))


def test_the_runner_never_imports_the_smoke_client() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PARENT_IMPORTS.replace("{port}", str(free_port()))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    modules = json.loads(result.stdout.strip().splitlines()[-1])
    assert "byoc.app" in modules
    assert not [m for m in modules if m.startswith("byoc.smoke")]
