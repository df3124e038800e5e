"""Slow clients against the real runner over raw sockets: headers sent a byte at a time are cut
off with a 408, a body that stalls is cut off, and a large body that keeps moving, a slow but
steady one and ordinary requests are untouched."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlsplit

from tests.byoc.harness import Env, running


async def connect(env: Env) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    url = urlsplit(env.url)
    assert url.hostname is not None and url.port is not None
    return await asyncio.open_connection(url.hostname, url.port)


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.read(), 30)


async def test_headers_a_byte_at_a_time_get_a_408_and_the_connection_closes() -> None:
    async with running(header_timeout_s=1.0) as env:
        clients = [await connect(env) for _ in range(20)]

        async def dribble(writer: asyncio.StreamWriter) -> None:
            request = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
            for byte in request:
                if writer.is_closing():
                    return
                writer.write(bytes([byte]))
                try:
                    await writer.drain()
                except ConnectionError:
                    return
                await asyncio.sleep(0.2)

        dribblers = [asyncio.create_task(dribble(w)) for _, w in clients]
        try:
            answers = await asyncio.gather(*(read_until_closed(r) for r, _ in clients))
        finally:
            for task in dribblers:
                task.cancel()
            for _, writer in clients:
                writer.close()
        for answer in answers:
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 408"), answer[:100]
            assert json.loads(body) == {
                "error": "request headers not received in time",
                "status_code": 408,
            }
        # A fresh, ordinary client is served.
        async with env.http.get(env.url + "/health") as r:
            assert r.status == 200


async def test_a_stalled_body_is_cut_off_but_a_steady_one_is_not() -> None:
    async with running(min_body_rate=1000, header_timeout_s=2.0) as env:
        body = json.dumps({"text": "x" * 20_000}).encode()
        head = (
            b"POST /text-reversal HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        # Stalled: headers and 10 bytes, then nothing.
        reader, writer = await connect(env)
        writer.write(head + body[:10])
        await writer.drain()
        started = time.monotonic()
        answer = await read_until_closed(reader)
        writer.close()
        assert b" 200 " not in answer.split(b"\r\n", 1)[0]
        assert time.monotonic() - started < 30  # closed by the runner, not by the hang guard

        # Steady: about 4 KB a second (above the minimum) for 5 s, past the header timeout.
        reader, writer = await connect(env)
        writer.write(head)
        for start in range(0, len(body), 400):
            writer.write(body[start : start + 400])
            await writer.drain()
            await asyncio.sleep(0.1)
        answer = await read_until_closed_or_response(reader)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


async def read_until_closed_or_response(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    length = int(
        next(
            line.split(b":", 1)[1]
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
    )
    return head + await asyncio.wait_for(reader.readexactly(length), 30)


async def test_a_large_upload_that_keeps_moving_is_accepted() -> None:
    async with running(min_body_rate=100_000, max_body_bytes=64 * 1024 * 1024) as env:
        text = "y" * (8 * 1024 * 1024)
        async with env.http.post(env.url + "/text-reversal", json={"text": text}) as r:
            assert r.status == 200
            assert len((await r.json())["reversed"]) == len(text)
