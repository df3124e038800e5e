"""Fixtures for the trickle tests: a real server on an ephemeral loopback port, raw HTTP helpers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from byoc.livepeer.trickle.server import TrickleServer

ServerFactory = Callable[..., Awaitable[TrickleServer]]


@pytest.fixture
async def make_server() -> AsyncIterator[ServerFactory]:
    """Start TrickleServers with the given options; all are closed at the end of the test."""
    servers: list[TrickleServer] = []

    async def start(*, ssl: Any = None, port: int = 0, **options: Any) -> TrickleServer:
        server = TrickleServer(**options)
        await server.start("127.0.0.1", port, ssl=ssl)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def server(make_server: ServerFactory) -> TrickleServer:
    return await make_server()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@dataclass
class RawPost:
    """A chunked POST driven byte by byte over a plain socket (what aiohttp cannot do: send
    headers without a body, or vanish mid-body)."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def chunk(self, data: bytes) -> None:
        self.writer.write(b"%x\r\n" % len(data) + data + b"\r\n")
        await self.writer.drain()

    async def end(self) -> None:
        self.writer.write(b"0\r\n\r\n")
        await self.writer.drain()

    async def response(self) -> tuple[int, dict[str, str]]:
        """Status and headers of the answer (lower-cased names)."""
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers

    def drop(self) -> None:
        """Vanish: close the socket without finishing the body."""
        self.writer.transport.abort()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def raw_post(url: str, headers: dict[str, str] | None = None) -> RawPost:
    """Open a chunked POST to ``url`` and send its request headers only."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    lines = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}"]
    lines += ["Transfer-Encoding: chunked", "Content-Type: application/octet-stream"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    return RawPost(reader, writer)


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``predicate`` until true (fails the test after ``timeout`` seconds)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.01)
