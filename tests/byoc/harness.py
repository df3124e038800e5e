"""Test harness: the full runner in-process (``byoc.serve.serve``) next to the local
orchestrator stand-in, on ephemeral ports, with short intervals, always stopped afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from byoc import capabilities as caps
from byoc.livepeer.header import encode_header
from byoc.livepeer.standin.orchestrator import LocalOrchestrator
from byoc.media_path import MediaFactory, MediaPath
from byoc.serve import Runner, serve
from byoc.settings import Settings
from byoc.supervisor import WorkerEntry

SECRET = "orch-secret"

FAST = {
    "host": "127.0.0.1",
    "port": 0,
    "orch_secret": SECRET,
    "register_interval_s": 60.0,
    "orch_check_interval_s": 0.2,
    "register_retry_max_s": 0.5,
    "register_rejected_retry_s": 60.0,
    "events_interval_s": 0.3,
    "control_silence_timeout_s": 30.0,
    "stream_start_timeout_s": 5.0,
    "session_sweep_interval_s": 60.0,
    "job_timeout_s": 30.0,
    "heartbeat_interval_s": 0.2,
    "heartbeat_timeout_s": 3.0,
    "restart_backoff_initial_s": 0.1,
    "restart_backoff_max_s": 0.5,
    "shutdown_timeout_s": 5.0,
    "state_dir": None,  # in memory; tests of the state store pass a directory
    "infer_workers": 1,  # the same on every machine; tests of several pass their count
}


def fast_settings(**changes: Any) -> Settings:
    """Settings for tests: loopback, port 0, short intervals (not validated: port 0 is ours)."""
    return dataclasses.replace(Settings(), **{**FAST, **changes})


@dataclass
class Env:
    """A running stand-in orchestrator and runner, and an HTTP client."""

    orch: LocalOrchestrator | None
    runner: Runner
    http: aiohttp.ClientSession
    settings: Settings
    served: asyncio.Task[None] | None = None
    """The ``serve`` task (it ends by itself after a drain)."""

    @property
    def url(self) -> str:
        return self.runner.url

    @property
    def orch_url(self) -> str:
        assert self.orch is not None
        return self.orch.url

    async def job(
        self,
        route: str,
        body: Any,
        *,
        capability: str | None = None,
        timeout: int = 60,
        **kwargs: Any,
    ) -> aiohttp.ClientResponse:
        """POST a job through the orchestrator (``/process/request/{route}`` with a header).

        ``timeout`` is the header's ``timeout_seconds``: the orchestrator's wait for our answer.
        The default is a hang guard (a thousand jobs on a busy machine take a while); tests of
        the timeout itself pass a short one.
        """
        header = encode_header(capability=capability or route, timeout_seconds=timeout)
        headers = {"Livepeer": header, **kwargs.pop("headers", {})}
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
        return await self.http.post(
            f"{self.orch_url}/process/request/{route}", data=data, headers=headers, **kwargs
        )


async def wait_until(
    check: Callable[[], Any], timeout: float = 60.0, interval: float = 0.02
) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def running(
    *,
    with_orchestrator: bool = True,
    tls: bool = False,
    orch_secret: str = SECRET,
    keepalive_interval_s: float = 0.2,
    workers: Mapping[str, WorkerEntry] | None = None,
    media: MediaPath | None = None,
    media_factory: MediaFactory | None = None,
    wait_registered: bool = True,
    orch_options: Mapping[str, Any] | None = None,
    live_runner: bool = False,
    **settings_changes: Any,
) -> AsyncIterator[Env]:
    """Start the stand-in (optional) and the runner; stop both and check nothing is left.

    ``orch_options``: more ``LocalOrchestrator`` arguments (e.g. Live Runner heartbeat timing);
    ``live_runner``: the runner also heartbeats to the stand-in as a Live Runner."""
    orch: LocalOrchestrator | None = None
    if with_orchestrator:
        orch = LocalOrchestrator(
            secret=orch_secret, keepalive_interval_s=keepalive_interval_s, **(orch_options or {})
        )
        await orch.start(tls=tls)
        settings_changes.setdefault("orch_urls", (orch.url,))
        if live_runner:
            settings_changes.setdefault("live_runner_orch_urls", (orch.url,))
    settings = fast_settings(**settings_changes)
    stop = asyncio.Event()
    ready = asyncio.Event()
    started: list[Runner] = []
    task = asyncio.create_task(
        serve(
            settings,
            ready,
            stop=stop,
            workers=workers or {},
            media=media,
            media_factory=media_factory,
            started=started,
        )
    )
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ssl=False))
    try:
        ready_wait = asyncio.create_task(ready.wait())
        await asyncio.wait({task, ready_wait}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            ready_wait.cancel()
            task.result()  # raises what serve raised
        runner = started[0]
        if orch is not None and wait_registered and settings.orch_urls == (orch.url,):
            expected = len(caps.IMPLEMENTED)
            await wait_until(lambda: len(orch.registry.capabilities) == expected, timeout=60)
        yield Env(orch, runner, http, settings, task)
    finally:
        await http.close()
        stop.set()
        await asyncio.wait_for(task, 30)
        if orch is not None:
            await orch.close()
        # Nothing of the runner may outlive it.
        if started:
            assert not started[0].runtime.streams.controllers
