"""Drives Livepeer's reference Python trickle client (pytrickle) as a test peer.

Runs under the separate pytrickle environment, so it imports nothing of this project; the
interop tests import ``segment_chunks`` from it (stdlib only at module level) to know what the
peer publishes.

    python pytrickle_peer.py publish URL COUNT [--json BYTES] [--pace SECONDS]
    python pytrickle_peer.py subscribe URL COUNT [--start-seq N]

Each segment handled is reported as one JSON line on stdout: ``{"seq", "size", "sha256"}``;
``{"eos": true}`` when the subscriber saw the end of the stream, ``{"done": true}`` at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import sys


def segment_chunks(index: int) -> list[bytes]:
    """The deterministic chunks of segment ``index`` (sizes from 1 byte to 100 kB)."""
    rng = random.Random(index)
    sizes = [1, 188, 1316, 32768, 100_000]
    return [rng.randbytes(rng.choice(sizes)) for _ in range(1 + index % 4)]


def json_document(size: int) -> bytes:
    return json.dumps({"prompt": "p" * size, "type": "params"}).encode()


def report(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def publish(url: str, count: int, json_size: int | None, pace: float) -> None:
    import aiohttp
    from pytrickle.publisher import TricklePublisher

    mime = "application/json" if json_size is not None else "video/mp2t"
    publisher = TricklePublisher(url, mime_type=mime)
    await publisher.start()
    try:
        for index in range(count):
            chunks = [json_document(json_size)] if json_size is not None else segment_chunks(index)
            writer = await publisher.next()
            for chunk in chunks:
                await writer.write(chunk)
                if pace:
                    await asyncio.sleep(pace)
            await writer.close()
            body = b"".join(chunks)
            report(seq=index, size=len(body), sha256=hashlib.sha256(body).hexdigest())
            # pytrickle moves to the next seq in a background task: calling next() again before
            # it ran reuses the same seq. Live sources always leave it that time; so do we.
            await asyncio.sleep(0.05)
        # pytrickle's close() cancels POSTs still in flight: wait until the server has them all.
        async with aiohttp.ClientSession() as http:
            for _ in range(500):
                async with http.get(f"{url}/next", ssl=False) as resp:
                    if resp.status == 200 and int(await resp.text()) >= count:
                        break
                await asyncio.sleep(0.02)
    finally:
        await publisher.close()
    report(done=True)


async def subscribe(url: str, count: int, start_seq: int) -> None:
    from pytrickle.subscriber import TrickleSubscriber

    subscriber = TrickleSubscriber(url, start_seq=start_seq)
    await subscriber.start()
    try:
        seen = 0
        while count < 0 or seen < count:
            segment = await subscriber.next()
            if segment is None:
                report(eos=True)
                break
            digest = hashlib.sha256()
            size = 0
            while chunk := await segment.read():
                digest.update(chunk)
                size += len(chunk)
            report(seq=segment.seq(), size=size, sha256=digest.hexdigest())
            seen += 1
    finally:
        await subscriber.close()
    report(done=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["publish", "subscribe"])
    parser.add_argument("url")
    parser.add_argument("count", type=int, help="segments; -1 = until end of stream")
    parser.add_argument("--start-seq", type=int, default=-2)
    parser.add_argument("--json", type=int, default=None, help="publish JSON documents")
    parser.add_argument("--pace", type=float, default=0.0, help="seconds between chunks")
    args = parser.parse_args()
    if args.mode == "publish":
        asyncio.run(publish(args.url, args.count, args.json, args.pace))
    else:
        asyncio.run(subscribe(args.url, args.count, args.start_seq))


if __name__ == "__main__":
    main()
