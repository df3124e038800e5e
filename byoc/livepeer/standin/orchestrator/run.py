"""``comfystream-byoc orchestrator``: run the stand-in until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal

from byoc.livepeer.standin.orchestrator.server import LocalOrchestrator

log = logging.getLogger(__name__)


async def run_orchestrator(
    *,
    host: str,
    port: int,
    secret: str = "",
    tls: bool = False,
    keepalive_interval_s: float = 10.0,
    ready: asyncio.Event | None = None,
) -> None:
    """Serve until a signal arrives, then end every stream and close every channel."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    orchestrator = LocalOrchestrator(secret=secret, keepalive_interval_s=keepalive_interval_s)
    try:
        url = await orchestrator.start(host, port, tls=tls)
        print(
            f"local orchestrator ready at {url} (trickle at {orchestrator.trickle_base})",
            flush=True,
        )
        if ready is not None:
            ready.set()
        await stop.wait()
    finally:
        await orchestrator.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
