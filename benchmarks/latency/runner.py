"""Our side of the benchmark: the local orchestrator stand-in and ``comfystream-byoc serve``,
each as its own process on an ephemeral 127.0.0.1 port, as a user would run them.

The runner registers its ``comfystream-video`` capability with the stand-in itself. Its
environment is cleaned of every runner setting (a user's ``ORCH_SECRET`` or
``CAPABILITY_TOKEN`` must not leak in); ``--device cpu`` hides GPUs from it
(``CUDA_VISIBLE_DEVICES=``), ``--device cuda`` leaves them visible (the infer worker then picks
CUDA, and ``/health`` says which device it took).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.latency.processes import ManagedProcess, free_port
from byoc.settings import OPTIONS

CAPABILITY = "comfystream-video"
SCRIPT = Path(sys.executable).parent / "comfystream-byoc"
STOP_TIMEOUT_S = 20.0


def runner_environment(device: str) -> dict[str, str]:
    """The current environment without runner settings; GPUs hidden for ``device="cpu"``."""
    names = {env for option in OPTIONS for env in option.env}
    env = {k: v for k, v in os.environ.items() if k not in names}
    env["PYTHONUNBUFFERED"] = "1"
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def _command(*args: str) -> list[str]:
    if SCRIPT.exists():
        return [str(SCRIPT), *args]
    return [sys.executable, "-m", "byoc", *args]


async def wait_http(
    http: aiohttp.ClientSession, url: str, accept: Any, timeout: float, process: ManagedProcess
) -> Any:
    """Poll ``url`` until ``accept(status, body)`` returns something true; return it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if not process.running:
            raise RuntimeError(f"{process.name} exited early (see {process.log_path})")
        try:
            async with http.get(url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
                body = await resp.read()
                found = accept(resp.status, body)
                if found:
                    return found
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
            pass
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{process.name} not ready within {timeout:g}s (see {process.log_path})")


@dataclass
class Orchestrator:
    """The stand-in process."""

    process: ManagedProcess
    url: str
    secret: str


async def start_orchestrator(http: aiohttp.ClientSession, log_dir: Path) -> Orchestrator:
    port = free_port()
    secret = secrets.token_hex(8)
    process = ManagedProcess(
        "orchestrator",
        _command(
            "orchestrator",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--secret",
            secret,
            "--log-level",
            "WARNING",
        ),
        log_path=log_dir / "orchestrator.log",
        env=runner_environment("cpu"),
    )
    await process.start()
    url = f"http://127.0.0.1:{port}"
    try:
        # Any answer from Go's mux (405 on GET) means it listens.
        await wait_http(http, f"{url}/capability/register", lambda s, _b: s == 405, 30.0, process)
    except BaseException:
        await process.stop()
        raise
    return Orchestrator(process, url, secret)


@dataclass
class Runner:
    """The ``comfystream-byoc serve`` process."""

    process: ManagedProcess
    url: str

    async def health(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        async with http.get(f"{self.url}/health", timeout=aiohttp.ClientTimeout(total=5)) as r:
            data = await r.json()
            return data if isinstance(data, dict) else {}

    async def pids(self, http: aiohttp.ClientSession) -> dict[str, int]:
        """``{"parent": pid, "<worker>": pid, ...}`` from ``/health``."""
        out = {"parent": self.process.pid}
        workers = (await self.health(http)).get("workers", {})
        for name, info in sorted(workers.items()):
            pid = info.get("pid") if isinstance(info, dict) else None
            if isinstance(pid, int):
                out[name] = pid
        return out


async def start_runner(
    http: aiohttp.ClientSession,
    orchestrator: Orchestrator | None,
    log_dir: Path,
    *,
    capacity: int,
    device: str,
    engine: str,
    workspace: Path,
    infer_workers: str = "auto",
    events_interval_s: float = 1.0,
    ready_timeout_s: float = 180.0,
    capability: str = CAPABILITY,
    extra_args: Sequence[str] = (),
    control_plane: str = "byoc",
) -> Runner:
    """``comfystream-byoc serve`` on an ephemeral port, registered with ``orchestrator`` (none:
    it serves its own routes only); ``extra_args`` are more ``serve`` flags."""
    port = free_port()
    registration = (
        []
        if orchestrator is None
        else ["--control-planes", "live-runner", "--live-runner-orch-url", orchestrator.url]
        if control_plane == "live-runner"
        else ["--control-planes", "byoc", "--orch-url", orchestrator.url]
    )
    process = ManagedProcess(
        "runner",
        _command(
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *registration,
            *(["--orch-secret", orchestrator.secret] if orchestrator is not None else []),
            "--capability-names",
            capability,
            "--capacity",
            str(capacity),
            "--engine",
            engine,
            "--infer-workers",
            infer_workers,
            "--workspace",
            str(workspace),
            "--events-interval",
            str(events_interval_s),
            "--state-dir",
            str(log_dir / "runner-state"),
            "--drain-timeout",
            "3",  # the runner is stopped with SIGTERM: a short drain, then a clean stop
            "--log-level",
            "INFO",
            *extra_args,
        ),
        log_path=log_dir / "runner.log",
        env=runner_environment(device),
    )
    await process.start()
    url = f"http://127.0.0.1:{port}"

    def healthy(status: int, body: bytes) -> bool:
        import json

        try:
            return status == 200 and json.loads(body).get("status") == "healthy"
        except ValueError:
            return False

    try:
        await wait_http(http, f"{url}/health", healthy, ready_timeout_s, process)
    except BaseException:
        await process.stop(timeout=STOP_TIMEOUT_S)
        raise
    return Runner(process, url)


def infer_device(health: dict[str, Any]) -> str | None:
    """The device the (first) infer worker reported at start-up (``/health`` worker detail)."""
    workers = health.get("workers", {})
    infer = workers.get("infer") or workers.get("infer-0") or {}
    detail = infer.get("detail") if isinstance(infer, dict) else None
    if isinstance(detail, dict):
        device = detail.get("device")
        return str(device) if device else None
    return None
