"""One smoke run: start a stream like a gateway, publish the counter clip, read the output back,
stop the stream, report (see :mod:`byoc.smoke`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from byoc.livepeer.trickle import TrickleError, TrickleSubscriber, read_json_segments
from byoc.smoke.gateway import (
    Gateway,
    OrchestratorGateway,
    RunnerGateway,
    StreamStartError,
    StreamUrls,
)
from byoc.smoke.pattern import ClipSpec
from byoc.smoke.report import SmokeReport, build_report
from byoc.smoke.sink import OutputReader
from byoc.smoke.source import ClipPublisher

log = logging.getLogger(__name__)

DEFAULT_CAPABILITY = "comfystream-video"
OUTPUT_QUIET_S = 3.0  # after the last input frame: no picture for this long ends the wait


class WorkflowFileError(ValueError):
    """The ``--workflow`` file cannot be read or is not a workflow."""


@dataclass(frozen=True)
class SmokeOptions:
    """What ``comfystream-byoc smoke`` was asked to do."""

    orch_url: str | None = None
    runner_url: str | None = None
    seconds: float = 10.0
    workflow: dict[str, Any] | None = None  # stream params carrying the workflow
    out_path: str | None = None
    width: int = 512
    height: int = 512
    fps: int = 30
    capability: str = DEFAULT_CAPABILITY
    token: str = ""  # the runner's CAPABILITY_TOKEN (runner mode)
    trickle_bind: str = "127.0.0.1"  # runner mode: where our trickle server listens
    trickle_host: str | None = None  # runner mode: the address the runner reaches it at
    trickle_port: int = 0
    output_wait_s: float = 30.0  # longest wait for output after the last input frame

    @property
    def target(self) -> str:
        if self.orch_url:
            return f"orchestrator {self.orch_url}"
        return f"runner {self.runner_url}"


def load_workflow(path: str) -> dict[str, Any]:
    """Stream params for the workflow in ``path``: an API-format workflow (a JSON object of
    nodes), or an object that already holds ``workflow`` or ``prompts``, or a prompts list."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WorkflowFileError(f"cannot read workflow {path}: {exc}") from exc
    if isinstance(data, list):
        return {"prompts": data}
    if not isinstance(data, dict) or not data:
        raise WorkflowFileError(f"workflow {path} is not a JSON object of nodes")
    if "workflow" in data or "prompts" in data:
        return {key: data[key] for key in ("workflow", "prompts") if key in data}
    return {"workflow": data}


def _gateway(options: SmokeOptions, http: aiohttp.ClientSession) -> Gateway:
    if options.orch_url:
        return OrchestratorGateway(http, options.orch_url, options.capability)
    assert options.runner_url
    return RunnerGateway(
        http,
        options.runner_url,
        token=options.token,
        bind_host=options.trickle_bind,
        advertise_host=options.trickle_host,
        port=options.trickle_port,
    )


async def _follow_status(events_url: str, report: SmokeReport) -> None:
    """Keep the latest status event the runner published (for the report)."""
    subscriber = TrickleSubscriber(events_url, verify_tls=False)
    try:
        async for document in read_json_segments(subscriber):
            event = document.get("event", document) if isinstance(document, dict) else None
            if isinstance(event, dict) and event.get("type") == "status":
                report.last_event = event
    except TrickleError as exc:
        log.info("smoke: events channel ended: %s", exc)
    finally:
        await subscriber.close()


async def run_smoke(options: SmokeOptions) -> SmokeReport:
    """Run one smoke test against an orchestrator or a runner (see the module docstring)."""
    stream_id = f"smoke-{secrets.token_hex(6)}"
    report = SmokeReport(target=options.target, stream_id=stream_id)
    spec = ClipSpec(width=options.width, height=options.height, fps=options.fps)
    params: dict[str, Any] = {"width": options.width, "height": options.height}
    params.update(options.workflow or {})
    connector = aiohttp.TCPConnector(ssl=False)  # orchestrators use self-signed certificates
    async with aiohttp.ClientSession(connector=connector) as http:
        gateway = _gateway(options, http)
        try:
            started = time.monotonic()
            try:
                urls = await gateway.start(stream_id, params)
            except (StreamStartError, aiohttp.ClientError, TimeoutError, OSError) as exc:
                report.errors.append(f"stream start failed: {exc}")
                return report
            report.start_ms = (time.monotonic() - started) * 1e3
            await _exchange(options, spec, urls, report)
        finally:
            await gateway.stop()
    return report


async def _exchange(
    options: SmokeOptions, spec: ClipSpec, urls: StreamUrls, report: SmokeReport
) -> None:
    """Publish the clip, read the output back until it goes quiet, fill the report."""
    frames = max(1, round(options.seconds * spec.fps))
    source = ClipPublisher(urls.publish_url, spec, frames, label=urls.stream_id)
    reader = OutputReader(
        urls.subscribe_url, fps=spec.fps, out_path=options.out_path, label=urls.stream_id
    )
    status = asyncio.create_task(_follow_status(urls.events_url, report))
    reader.start()
    stop = asyncio.Event()
    t0_ns = time.monotonic_ns() + 100_000_000  # frame 0 a moment from now
    reader.t0_ns = t0_ns
    try:
        sent = await source.run(t0_ns, stop)
        await reader.wait_quiet(OUTPUT_QUIET_S, options.output_wait_s)
    finally:
        await source.close()
        written = await reader.close()
        status.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await status
    if written and options.out_path:
        report.output_video = options.out_path
    build_report(report, sent, reader.log, t0_ns)
