"""Drives Livepeer's official Python SDK (``livepeer-gateway``) as a test peer.

Runs under the separate SDK environment (``.venv-gateway``), so it imports nothing of this
project. The SDK declares Python >= 3.12; it is installed with ``--ignore-requires-python`` and
runs on 3.11 for what these modes use.

    python gateway_sdk_peer.py client DISCOVERY_URL APP PATH JSON [--hold]
    python gateway_sdk_peer.py runner ORCH_URL SECRET RUNNER_URL APP [--capacity N]

``client``: ``reserve_session`` through discovery, ``post_json`` to ``{app_url}/PATH``, then (after
stdin closes, with ``--hold``) ``aclose`` (the orchestrator's stop). ``runner``: ``register_runner``
with session callbacks, until stdin closes, then ``close`` (unregister). Every step is one JSON
line on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any


def report(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def stdin_closed() -> None:
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def client(discovery_url: str, app: str, path: str, payload: str, hold: bool) -> None:
    from livepeer_gateway import reserve_session
    from livepeer_gateway.http import post_json

    session = await reserve_session(discovery_url=discovery_url, app=app, timeout=30.0)
    report(
        step="reserved",
        session_id=session.session_id,
        app_url=session.app_url,
        control_url=session.control_url,
    )
    try:
        answer = await post_json(f"{session.app_url}/{path}", json.loads(payload), timeout=60.0)
        report(step="answer", answer=answer)
        if hold:
            await stdin_closed()
    finally:
        await session.aclose()
        report(step="stopped")


async def runner(orch_url: str, secret: str, runner_url: str, app: str, capacity: int) -> None:
    from livepeer_gateway import register_runner

    async def on_reserve(event: Any) -> None:
        report(step="reserve", session_id=event.session_id)

    async def on_release(event: Any) -> None:
        report(step="release", session_id=event.session_id)

    registration = await register_runner(
        orch_url,
        secret=secret,
        runner_url=runner_url,
        app=app,
        capacity=capacity,
        auto_detect_gpu=False,
        on_session_reserve=on_reserve,
        on_session_release=on_release,
    )
    report(step="registered", runner_id=registration.runner_id)
    try:
        await stdin_closed()
    finally:
        await registration.close()
        report(step="closed")


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("client")
    c.add_argument("discovery_url")
    c.add_argument("app")
    c.add_argument("path")
    c.add_argument("payload")
    c.add_argument("--hold", action="store_true")
    r = sub.add_parser("runner")
    r.add_argument("orch_url")
    r.add_argument("secret")
    r.add_argument("runner_url")
    r.add_argument("app")
    r.add_argument("--capacity", type=int, default=1)
    args = parser.parse_args()
    if args.mode == "client":
        asyncio.run(client(args.discovery_url, args.app, args.path, args.payload, args.hold))
    else:
        asyncio.run(runner(args.orch_url, args.secret, args.runner_url, args.app, args.capacity))


if __name__ == "__main__":
    main()
