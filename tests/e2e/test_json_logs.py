"""``--log-format json`` in a real ``comfystream-byoc serve`` (parent, stand-in orchestrator and
the three real workers): every line a stream's life writes, start to stop, is one JSON object
with the same fields in every process, and the lines about the stream carry its id."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.latency.gateway import start_stream_when_registered, stop_stream
from benchmarks.latency.processes import ManagedProcess, free_port
from benchmarks.latency.runner import _command, runner_environment, wait_http
from tests.e2e.conftest import INVERT, LiveSource

FIELDS = {"ts", "level", "process", "logger", "msg"}
CAPABILITY = "comfystream-video"


async def test_a_stream_s_life_in_json_lines(tmp_path: Path) -> None:
    port, orchestrator_port = free_port(), free_port()
    log_path = tmp_path / "serve.log"
    process = ManagedProcess(
        "runner",
        _command(
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--with-orchestrator",
            "--orchestrator-port",
            str(orchestrator_port),
            "--capability-names",
            CAPABILITY,
            "--engine",
            "builtin",
            "--workspace",
            str(tmp_path),
            "--log-format",
            "json",
        ),
        log_path=log_path,
        env=runner_environment("cpu"),
    )
    url = f"http://127.0.0.1:{port}"
    orchestrator_url = f"http://127.0.0.1:{orchestrator_port}"
    stream_id = "json-logs-1"
    await process.start()
    try:
        async with aiohttp.ClientSession() as http:

            def healthy(status: int, body: bytes) -> bool:
                return status == 200 and json.loads(body).get("status") == "healthy"

            await wait_http(http, f"{url}/health", healthy, 120.0, process)
            urls = await start_stream_when_registered(
                http, orchestrator_url, CAPABILITY, stream_id, {"workflow": INVERT}
            )
            source = LiveSource(urls.publish_url, audio=False)
            try:
                source.start(20)
                await source.wait(60)
            finally:
                await source.stop()
            assert await stop_stream(http, orchestrator_url, CAPABILITY, stream_id) == 200

            def ended(status: int, body: bytes) -> bool:
                return status == 200 and json.loads(body)["status"] not in (
                    "starting",
                    "ready",
                    "processing",
                )

            await wait_http(http, f"{url}/byoc/session/{stream_id}/status", ended, 30.0, process)
    finally:
        code = await process.stop(timeout=30.0, sig=signal.SIGINT)
    assert code == 0

    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    entries: list[dict[str, Any]] = []
    for line in lines:
        entry = json.loads(line)  # every line, from every process, is one JSON object
        assert isinstance(entry, dict) and FIELDS <= set(entry), line
        assert entry["ts"].endswith("Z") and entry["level"] in {"DEBUG", "INFO", "WARNING", "ERROR"}
        entries.append(entry)
    assert {"parent", "ingest", "infer", "egress"} <= {e["process"] for e in entries}
    about_stream = [e for e in entries if e.get("stream_id") == stream_id]
    assert {"parent", "ingest", "infer", "egress"} <= {e["process"] for e in about_stream}
    assert all(stream_id in e["msg"] for e in about_stream)
    assert any(e.get("session_id") == stream_id for e in entries), "session transitions"
    started = [e for e in about_stream if "started" in e["msg"]]
    assert started, "the start of the stream is logged with its id"
