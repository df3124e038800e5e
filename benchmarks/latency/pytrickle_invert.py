"""The baseline runner: pytrickle's own ``StreamProcessor`` with an invert video handler.

Runs under the pytrickle environment (``.venv-pytrickle/bin/python``), so it imports nothing of
this project. pytrickle serves go-livepeer's worker routes (``/stream/start`` etc.) and does
decode -> handler -> encode in one asyncio process, one stream at a time; the benchmark starts
one of these per concurrent stream and registers each with the orchestrator stand-in.

It listens on an ephemeral 127.0.0.1 port and prints one JSON line on stdout once serving:
``{"port", "pid", "versions"}``. SIGTERM or SIGINT stop it: pytrickle is given a few seconds to
stop its stream, then the process exits.

    .venv-pytrickle/bin/python benchmarks/latency/pytrickle_invert.py [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from typing import Any

STOP_GRACE_S = 5.0


def _versions() -> dict[str, Any]:
    from importlib.metadata import version

    import av
    import torch

    return {
        "pytrickle": version("pytrickle"),
        "torch": torch.__version__,
        "av": av.__version__,
        "libavcodec": ".".join(str(v) for v in av.library_versions.get("libavcodec", ())),
        "python": sys.version.split()[0],
    }


async def serve(device_name: str, host: str) -> None:
    import torch
    from pytrickle import StreamProcessor
    from pytrickle.frames import VideoFrame

    device = torch.device(device_name)

    async def invert(frame: VideoFrame) -> VideoFrame:
        # pytrickle hands the picture over as float32 RGB in [0, 1], shape [1, H, W, 3].
        tensor = frame.tensor
        if device.type != "cpu":
            tensor = tensor.to(device, non_blocking=True)
        return frame.replace_tensor(1.0 - tensor)

    processor = StreamProcessor(
        video_processor=invert, name="latency-baseline-invert", port=0, host=host
    )
    server = processor.server
    server.state.set_startup_complete()  # no model to load (what run_forever() does then)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    app_runner = await server.start_server()
    try:
        port = app_runner.addresses[0][1]
        sys.stdout.write(
            json.dumps({"port": port, "pid": os.getpid(), "versions": _versions()}) + "\n"
        )
        sys.stdout.flush()
        await stop.wait()
    finally:
        try:
            await asyncio.wait_for(server.stop(), STOP_GRACE_S)
        except asyncio.TimeoutError:
            logging.getLogger(__name__).warning("pytrickle did not stop in %gs", STOP_GRACE_S)
        await app_runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="torch device for the handler")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s [pytrickle %(process)d] %(name)s: %(message)s",
    )
    # Not asyncio.run(): its shutdown waits for the default executor, where pytrickle's decoder
    # thread can stay blocked on its input pipe after the stream stopped. Leave without it.
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(serve(args.device, args.host))
    finally:
        sys.stdout.flush()
        logging.shutdown()
        os._exit(0)


if __name__ == "__main__":
    main()
