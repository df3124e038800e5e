"""Fixtures for the trickle tests: a real server on an ephemeral loopback port, raw HTTP helpers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from byoc.livepeer.standin.trickle_server import TrickleServer

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
        self.writer.close()

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


async def wait_until(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll ``predicate`` until true (fails the test after ``timeout`` seconds)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.01)


class TcpProxy:
    """A loopback TCP relay in front of a server: counts connections and can cut one of them
    once it carried more than a given number of bytes (upstream: client to server)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.accepted = 0
        self.cut_upstream_after: int | None = None
        self.cut_downstream_after: int | None = None
        self.cuts_left = 1
        self.cuts = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._live: set[asyncio.StreamWriter] = set()
        self._accepted: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def url(self, server_url: str) -> str:
        """``server_url`` with the port replaced by the proxy's."""
        return server_url.replace(f":{self.target_port}/", f":{self.port}/", 1)

    def drop_all(self) -> int:
        """Abort every connection relayed right now (an idle-connection reaper). Returns how many."""
        live, self._live = self._live, set()
        for writer in live:
            writer.transport.abort()
        return len(live)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._accepted:
            writer.transport.abort()  # relays see EOF and close their upstream side themselves
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._accepted:  # also those whose relay task never got to run
            writer.close()
        if self._server is not None:
            await self._server.wait_closed()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._accepted.add(writer)
        task = asyncio.create_task(self._relay(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._live.add(writer)
        writers = [writer]
        pipes: list[asyncio.Task[None]] = []
        try:
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            except OSError:
                return
            writers.append(up_writer)

            def cut() -> None:
                self.cuts += 1
                for w in writers:
                    w.transport.abort()

            async def pipe(
                src: asyncio.StreamReader, dst: asyncio.StreamWriter, limit: int | None
            ) -> None:
                carried = 0
                with contextlib.suppress(ConnectionError, OSError):
                    while data := await src.read(65536):
                        if limit is not None and self.cuts_left > 0 and carried + len(data) > limit:
                            self.cuts_left -= 1
                            dst.write(data[: limit - carried])
                            await dst.drain()
                            cut()
                            return
                        carried += len(data)
                        dst.write(data)
                        await dst.drain()

            pipes = [
                asyncio.create_task(pipe(reader, up_writer, self.cut_upstream_after)),
                asyncio.create_task(pipe(up_reader, writer, self.cut_downstream_after)),
            ]
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pipes:
                task.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)
            self._live.discard(writer)
            for w in writers:
                w.transport.abort()
                w.close()


@pytest.fixture
async def proxy_factory() -> AsyncIterator[Callable[[int], Awaitable[TcpProxy]]]:
    proxies: list[TcpProxy] = []

    async def make(target_port: int) -> TcpProxy:
        proxy = TcpProxy(target_port)
        await proxy.start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        await proxy.close()


@contextlib.contextmanager
def reserved_port() -> Iterator[int]:
    """A loopback port that is bound but not listening (connections are refused) until the
    context ends; then a server can take it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port
