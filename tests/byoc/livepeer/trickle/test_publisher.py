"""TricklePublisher against our real server (and a byte-counting TCP relay for faults)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from byoc.livepeer.standin.trickle_server import TrickleServer
from byoc.livepeer.trickle import ChannelClosedError, PublishError, TricklePublisher
from byoc.livepeer.trickle.constants import HEADER_SEQ
from ipc.deadline import shared_deadline
from tests.byoc.livepeer.conftest import (
    ServerFactory,
    TcpProxy,
    port_of,
    raw_post,
    reserved_port,
    wait_until,
)


async def read(http: aiohttp.ClientSession, url: str) -> tuple[int, bytes]:
    async with http.get(url) as resp:
        return resp.status, await resp.read()


async def test_segments_in_order_with_channel_content_type(
    server: TrickleServer, http: aiohttp.ClientSession
):
    server.create_channel("out", "video/MP2T")
    url = server.channel_url("out")
    async with TricklePublisher(url, "video/mp2t", delete_on_close=False) as pub:
        for i in range(4):
            async with pub.segment() as seg:
                assert seg.seq == i
                await seg.write(b"seg-%d-" % i)
                await seg.write(b"tail")
            assert await seg.wait()
        assert pub.seq == 4
    for i in range(4):
        async with http.get(f"{url}/{i}") as resp:
            assert resp.headers["Content-Type"] == "video/MP2T"
            assert await resp.read() == b"seg-%d-tail" % i


async def test_bytes_leave_before_segment_ends(server: TrickleServer, http: aiohttp.ClientSession):
    server.create_channel("live")
    url = server.channel_url("live")
    async with TricklePublisher(url, "video/mp2t") as pub:
        seg = await pub.next_segment()
        await seg.write(b"first")
        async with http.get(url + "/0") as resp:
            assert await resp.content.readexactly(5) == b"first"  # segment still open
            await seg.write(b"second")
            assert await resp.content.readexactly(6) == b"second"
            await seg.close()
            assert await resp.content.read() == b""


async def test_next_segment_is_preconnected(server: TrickleServer, proxy_factory):
    server.create_channel("c")
    proxy: TcpProxy = await proxy_factory(port_of(server.base_url))
    async with TricklePublisher(proxy.url(server.channel_url("c")), "video/mp2t") as pub:
        seg = await pub.next_segment()
        await seg.write(b"x")
        # seq 1's connection is open before anyone asked for segment 1
        await wait_until(lambda: proxy.accepted >= 2)
        assert pub.seq == 1
        await seg.close()
        assert await seg.wait()
        async with pub.segment() as seg1:
            await seg1.write(b"y")
        assert await seg1.wait()
        assert seg1.seq == 1


async def test_stops_on_missing_channel(server: TrickleServer):
    pub = TricklePublisher(server.channel_url("missing"), "video/mp2t")
    seg = await pub.next_segment()
    await seg.write(b"data")
    await seg.close()
    assert not await seg.wait()
    assert pub.closed
    with pytest.raises(ChannelClosedError):
        pub.segment()
    await pub.close()


async def test_channel_deleted_while_publishing(server: TrickleServer, http: aiohttp.ClientSession):
    server.create_channel("c")
    url = server.channel_url("c")
    pub = TricklePublisher(url, "video/mp2t")
    seg = await pub.next_segment()
    await seg.write(b"some")
    await wait_until(lambda: server.channel("c").next_write == 1)
    async with http.delete(url) as resp:
        assert resp.status == 200
    await wait_until(lambda: pub.closed)
    with pytest.raises(ChannelClosedError):
        await seg.write(b"more")
    await pub.close()


async def test_exception_aborts_segment(server: TrickleServer, http: aiohttp.ClientSession):
    server.create_channel("c")
    url = server.channel_url("c")
    async with TricklePublisher(url, "video/mp2t", delete_on_close=False) as pub:
        reader = asyncio.create_task(read(http, url + "/0"))
        with pytest.raises(RuntimeError):
            async with pub.segment() as seg:
                await seg.write(b"half a segment")
                await wait_until(lambda: server.channel("c").next_write == 1)
                raise RuntimeError("encoder died")
        status, body = await reader
        assert (status, body) == (200, b"half a segment")  # truncated, then EOF
        assert server.channel("c").segment(0).closed
        async with pub.segment() as seg:
            await seg.write(b"next one")
        assert await seg.wait()
    assert await read(http, url + "/1") == (200, b"next one")


async def test_retries_refused_connection_without_duplicates(
    make_server: ServerFactory, http: aiohttp.ClientSession
):
    with reserved_port() as port:
        url = f"http://127.0.0.1:{port}/ai/trickle/c"
        pub = TricklePublisher(url, "video/mp2t", connect_retries=8, retry_backoff=0.05)
        seg = await pub.next_segment()
        await seg.write(b"queued while the server is down")
        await seg.close()
        await asyncio.sleep(0.1)  # a few refused attempts
    server = await make_server(port=port)
    server.create_channel("c")
    assert await seg.wait()
    assert await read(http, url + "/0") == (200, b"queued while the server is down")
    await pub.close(delete_channel=False)


async def test_failure_after_bytes_sent_drops_and_deletes_segment(
    server: TrickleServer, http: aiohttp.ClientSession, proxy_factory
):
    server.create_channel("c")
    proxy: TcpProxy = await proxy_factory(port_of(server.base_url))
    proxy.cut_upstream_after = 60_000  # only the big segment's POST carries this much
    async with TricklePublisher(
        proxy.url(server.channel_url("c")), "video/mp2t", delete_on_close=False
    ) as pub:
        seg = await pub.next_segment()
        for _ in range(10):
            await seg.write(b"b" * 10_000)
        await seg.close()
        assert not await seg.wait()
        assert proxy.cuts == 1
        async with pub.segment() as seg1:
            await seg1.write(b"after")
        assert await seg1.wait()
    url = server.channel_url("c")
    status, body = await read(http, url + "/0")
    assert status == 200 and len(body) < 100_000 and set(body) == {ord("b")}
    assert server.channel("c").segment(0).closed
    assert await read(http, url + "/1") == (200, b"after")


async def test_close_deletes_channel_unless_asked_not_to(server: TrickleServer):
    server.create_channel("a")
    server.create_channel("b")
    async with TricklePublisher(server.channel_url("a"), "application/json") as pub:
        async with pub.segment() as seg:
            await seg.write(b"{}")
    assert "a" not in server.channel_names()
    async with TricklePublisher(
        server.channel_url("b"), "application/json", delete_on_close=False
    ) as pub:
        async with pub.segment() as seg:
            await seg.write(b"{}")
    assert "b" in server.channel_names()


async def test_resume_with_reset_after_restart(server: TrickleServer, http: aiohttp.ClientSession):
    server.create_channel("c")
    url = server.channel_url("c")
    async with TricklePublisher(url, "video/mp2t", delete_on_close=False) as old:
        for i in range(3):
            async with old.segment() as seg:
                await seg.write(b"old%d" % i)
    hung = await raw_post(url + "/3")  # the old process died mid-segment, socket half-open
    await hung.chunk(b"partial")
    async with http.get(url + "/3") as stuck:
        assert await stuck.content.readexactly(7) == b"partial"
        async with TricklePublisher(url, "video/mp2t", start_seq=None, reset=True) as pub:
            async with pub.segment() as seg:
                await seg.write(b"resumed")
            assert seg.seq == 4
            assert await stuck.content.read() == b""  # released by Lp-Trickle-Reset
            async with pub.segment() as seg:
                await seg.write(b"then")
            assert (seg.seq, await seg.wait()) == (5, True)
            assert await read(http, url + "/4") == (200, b"resumed")
            assert await read(http, url + "/5") == (200, b"then")
    await hung.close()


async def test_resume_on_server_without_next_route(http: aiohttp.ClientSession):
    """Older orchestrators answer ``GET {ch}/next`` with 400: the first segment goes to -1."""

    @web.middleware
    async def no_next(request: web.Request, handler):
        if request.path.endswith("/next"):
            return web.Response(status=400, text="Invalid idx\n")
        return await handler(request)

    trickle = TrickleServer()
    app = web.Application(middlewares=[no_next])
    trickle.add_routes(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        trickle.create_channel("c")
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/ai/trickle/c"
        for i in range(2):
            async with http.post(f"{url}/{i}", data=b"before") as resp:
                assert resp.status == 200
        async with TricklePublisher(url, "video/mp2t", start_seq=None) as pub:
            async with pub.segment() as seg:
                await seg.write(b"first")
            assert await seg.wait() and seg.seq == 2
            async with pub.segment() as seg:
                await seg.write(b"second")
            assert await seg.wait() and seg.seq == 3
            assert await read(http, f"{url}/3") == (200, b"second")
    finally:
        await runner.cleanup()


async def test_tolerates_interim_100_continue():
    """go-livepeer writes ``100 Continue`` while a POST waits for its first byte."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = b""
        while True:
            size = int((await reader.readline()).strip(), 16)
            body += await reader.readexactly(size + 2)
            if size == 0:
                break
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        writer.write(
            f"HTTP/1.1 200 OK\r\n{HEADER_SEQ}: 0\r\nContent-Length: 0\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        await writer.drain()
        writer.close()

    tcp = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = tcp.sockets[0].getsockname()[1]
    try:
        pub = TricklePublisher(f"http://127.0.0.1:{port}/ai/trickle/c", "video/mp2t")
        async with pub.segment() as seg:
            await seg.write(b"payload")
        assert await seg.wait()
        await pub.close(delete_channel=False)
    finally:
        tcp.close()
        await tcp.wait_closed()
    assert seen[0].startswith(b"POST /ai/trickle/c/0 HTTP/1.1")
    assert b"content-type: video/mp2t" in seen[0].lower()


async def test_gives_up_when_server_is_gone(make_server: ServerFactory):
    server = await make_server()
    server.create_channel("c")
    url = server.channel_url("c")
    pub = TricklePublisher(url, "video/mp2t", connect_retries=1, retry_backoff=0.01)
    async with pub.segment() as seg:
        await seg.write(b"ok")
    assert await seg.wait()
    await server.close()
    with pytest.raises((PublishError, ChannelClosedError)):
        for _ in range(20):
            async with pub.segment() as seg:
                await seg.write(b"lost")
            await seg.wait()
    assert pub.closed
    await pub.close()


async def test_shared_session_is_left_open(server: TrickleServer):
    server.create_channel("c")
    async with aiohttp.ClientSession() as session:
        async with TricklePublisher(server.channel_url("c"), "video/mp2t", session=session) as pub:
            async with pub.segment() as seg:
                await seg.write(b"x")
        assert not session.closed


async def test_idle_preconnect_dropped_again_and_again(
    server: TrickleServer, http: aiohttp.ClientSession, proxy_factory
):
    """Servers and middleboxes reap idle connections: the waiting preconnect reconnects quietly
    and the next segment still goes out (no failure counted, no PublishError)."""
    server.create_channel("c")
    proxy: TcpProxy = await proxy_factory(port_of(server.base_url))
    async with TricklePublisher(
        proxy.url(server.channel_url("c")),
        "application/json",
        delete_on_close=False,
        retry_backoff=0.01,
        max_failed_segments=1,
    ) as pub:
        async with pub.segment() as seg:
            await seg.write(b"{}")
        assert await seg.wait()
        for _ in range(6):
            accepted = proxy.accepted
            await wait_until(lambda: proxy.drop_all() > 0)
            await wait_until(lambda before=accepted: proxy.accepted > before)  # reconnected
        async with pub.segment() as seg:
            await seg.write(b'{"after": "idle"}')
        assert await seg.wait() and not pub.closed
    assert await read(http, server.channel_url("c") + "/1") == (200, b'{"after": "idle"}')


async def test_close_keeps_a_shared_deadline_against_a_server_that_never_answers() -> None:
    """With its own timeouts a close waited 5 s for in-flight posts, then the whole connect
    timeout (60 s here) for the DELETE; under a shutdown's deadline it ends with the deadline."""
    accepted: list[asyncio.StreamWriter] = []
    connected = asyncio.Event()

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        connected.set()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    publisher = TricklePublisher(
        f"http://127.0.0.1:{port}/hang", "video/mp2t", start_seq=0, connect_timeout=60.0
    )
    try:
        segment = await publisher.next_segment()
        write = asyncio.create_task(segment.write(b"x" * 1000))
        await asyncio.wait_for(connected.wait(), 30)
        with shared_deadline(1.0):
            await asyncio.wait_for(publisher.close(), 30)  # 30 s: a hang guard
        write.cancel()
        await asyncio.gather(write, return_exceptions=True)
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
