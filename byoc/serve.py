"""``comfystream-byoc serve``: the parent process — HTTP API, supervisor and clean shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from byoc.app import create_app
from byoc.settings import Settings
from byoc.supervisor import Supervisor

log = logging.getLogger(__name__)


async def serve(settings: Settings, ready: asyncio.Event | None = None) -> None:
    """Run the runner until SIGINT or SIGTERM, then stop the workers and release everything."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    supervisor = Supervisor(
        settings,
        worker_options={
            "infer": {"engine": settings.engine, "workspace": str(settings.workspace)},
        },
    )
    app = create_app(settings, supervisor)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        log.info("listening on http://%s:%d", settings.host, settings.port)
        await supervisor.start()
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("shutting down")
    finally:
        await runner.cleanup()
        await supervisor.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    log.info("stopped")
