"""TrickleServer over real HTTP on loopback: go-livepeer's wire behaviour, case by case."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from byoc.livepeer.standin.trickle_server import TrickleServer
from byoc.livepeer.trickle.constants import (
    HEADER_CLOSED,
    HEADER_LATEST,
    HEADER_RESET,
    HEADER_SEQ,
    STATUS_SEQ_UNAVAILABLE,
)
from tests.byoc.livepeer.conftest import ServerFactory, raw_post, wait_until


async def body_of(*chunks: bytes, gate: asyncio.Event | None = None) -> AsyncIterator[bytes]:
    """A chunked request body; with ``gate``, the last chunk waits for it."""
    for i, chunk in enumerate(chunks):
        if gate is not None and i == len(chunks) - 1:
            await gate.wait()
        yield chunk


async def post(
    http: aiohttp.ClientSession, url: str, *chunks: bytes, gate: asyncio.Event | None = None
) -> aiohttp.ClientResponse:
    async with http.post(url, data=body_of(*chunks, gate=gate)) as resp:
        await resp.read()
        return resp


async def get(http: aiohttp.ClientSession, url: str) -> tuple[aiohttp.ClientResponse, bytes]:
    async with http.get(url) as resp:
        return resp, await resp.read()


def waiting(server: TrickleServer, channel: str, seq: int) -> int:
    ch = server.channel(channel)
    seg = ch.segment(seq) if ch else None
    return seg.readers_waiting if seg else 0


# ---- basics ---------------------------------------------------------------------------------


async def test_unknown_channel_is_404_plain_text(
    server: TrickleServer, http: aiohttp.ClientSession
):
    url = server.channel_url("nope")
    resp, body = await get(http, url + "/0")
    assert (resp.status, body) == (404, b"Stream not found\n")
    assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
    async with http.post(url + "/0", data=b"x") as resp:
        assert resp.status == 404
        assert resp.headers.get("Connection", "").lower() == "close"
    resp, _ = await get(http, url + "/next")
    assert resp.status == 404


async def test_next_on_new_channel(server: TrickleServer, http: aiohttp.ClientSession):
    server.create_channel("c", "video/MP2T")
    resp, body = await get(http, server.channel_url("c") + "/next")
    assert (resp.status, body, resp.headers[HEADER_LATEST]) == (200, b"0", "0")


async def test_publish_then_read_chunked(server: TrickleServer, http: aiohttp.ClientSession):
    server.create_channel("c", "video/MP2T")
    url = server.channel_url("c")
    resp = await post(http, url + "/0", b"one", b"two", b"three")
    assert (resp.status, resp.headers[HEADER_SEQ]) == (200, "0")
    resp, body = await get(http, url + "/0")
    assert (resp.status, body) == (200, b"onetwothree")
    assert resp.headers[HEADER_SEQ] == "0"
    assert resp.headers["Content-Type"] == "video/MP2T"
    assert resp.headers[HEADER_LATEST] == "1"


async def test_publish_with_content_length(server: TrickleServer, http: aiohttp.ClientSession):
    server.create_channel("c")
    url = server.channel_url("c")
    async with http.post(url + "/0", data=b"sized body") as resp:
        assert resp.status == 200
    _, body = await get(http, url + "/0")
    assert body == b"sized body"


async def test_live_relay_with_slow_writer(server: TrickleServer, http: aiohttp.ClientSession):
    server.create_channel("live", "video/MP2T")
    url = server.channel_url("live") + "/0"
    reader = asyncio.create_task(http.get(url))
    await wait_until(lambda: waiting(server, "live", 0) == 1)
    await asyncio.sleep(0.05)
    assert not reader.done(), "headers must wait for the first byte"

    gate = asyncio.Event()
    a, b = b"A" * 5000, b"B" * 7000
    publisher = asyncio.create_task(post(http, url, a, b, gate=gate))
    resp = await reader
    assert resp.status == 200 and resp.headers[HEADER_SEQ] == "0"
    assert await resp.content.readexactly(len(a)) == a  # while B is still held back
    assert not gate.is_set() and not publisher.done()
    gate.set()
    assert await resp.content.read() == b
    assert (await publisher).status == 200
    resp.release()


async def test_get_next_and_current(server: TrickleServer, http: aiohttp.ClientSession):
    server.create_channel("c")
    url = server.channel_url("c")
    early = asyncio.create_task(get(http, url + "/-1"))
    await wait_until(lambda: waiting(server, "c", 0) == 1)
    await post(http, url + "/0", b"zero")
    resp, body = await early
    assert (resp.headers[HEADER_SEQ], body) == ("0", b"zero")
    await post(http, url + "/1", b"one")

    next_reader = asyncio.create_task(get(http, url + "/-1"))
    await wait_until(lambda: waiting(server, "c", 2) == 1)
    gate = asyncio.Event()
    upload = asyncio.create_task(post(http, url + "/2", b"two-a", b"two-b", gate=gate))
    await wait_until(lambda: (ch := server.channel("c")) is not None and ch.next_write == 3)
    async with http.get(url + "/-2") as current:
        assert current.headers[HEADER_SEQ] == "2"
        assert await current.content.readexactly(5) == b"two-a"  # from byte 0, mid-upload
        gate.set()
        assert await current.content.read() == b"two-b"
    resp, body = await next_reader
    assert (resp.headers[HEADER_SEQ], body) == ("2", b"two-atwo-b")
    assert (await upload).status == 200


async def test_470_ahead_and_evicted(server: TrickleServer, http: aiohttp.ClientSession):
    server.create_channel("c")
    url = server.channel_url("c")
    for seq in range(7):
        await post(http, url + f"/{seq}", b"seg%d" % seq)
    for seq in (0, 1, 8):
        resp, body = await get(http, url + f"/{seq}")
        assert resp.status == STATUS_SEQ_UNAVAILABLE, seq
        assert body == b"Entry not found"
        assert resp.headers[HEADER_SEQ] == str(seq)
        assert resp.headers[HEADER_LATEST] == "7"
    for seq in range(2, 7):
        resp, body = await get(http, url + f"/{seq}")
        assert (resp.status, body) == (200, b"seg%d" % seq)


async def test_seq_one_waits_on_fresh_channel(server: TrickleServer, http: aiohttp.ClientSession):
    server.create_channel("c")
    url = server.channel_url("c")
    reader = asyncio.create_task(get(http, url + "/1"))
    await wait_until(lambda: waiting(server, "c", 1) == 1)
    await post(http, url + "/0", b"zero")
    await post(http, url + "/1", b"one")
    resp, body = await reader
    assert (resp.status, body) == (200, b"one")


async def test_empty_segment_advances(server: TrickleServer, http: aiohttp.ClientSession):
    server.create_channel("c")
    url = server.channel_url("c")
    resp = await post(http, url + "/0")
    assert (resp.status, resp.headers[HEADER_SEQ]) == (200, "0")
    resp, body = await get(http, url + "/next")
    assert body == b"1"
    resp, body = await get(http, url + "/0")
    assert (resp.status, body) == (200, b"")
    assert HEADER_CLOSED not in resp.headers


async def test_post_seq_minus_one_uses_next_write(
    server: TrickleServer, http: aiohttp.ClientSession
):
    server.create_channel("c")
    url = server.channel_url("c")
    await post(http, url + "/0", b"a")
    await post(http, url + "/1", b"b")
    resp = await post(http, url + "/-1", b"c")
    assert resp.headers[HEADER_SEQ] == "2"
    _, body = await get(http, url + "/2")
    assert body == b"c"


@pytest.mark.parametrize(
    ("method", "seq"),
    [("GET", "abc"), ("GET", "-3"), ("POST", "abc"), ("POST", "-2"), ("DELETE", "-5")],
)
async def test_bad_seq_is_400(
    server: TrickleServer, http: aiohttp.ClientSession, method: str, seq: str
):
    server.create_channel("c")
    async with http.request(method, server.channel_url("c") + f"/{seq}", data=b"") as resp:
        assert (resp.status, await resp.read()) == (400, b"Invalid idx\n")


async def test_channel_content_type_wins(server: TrickleServer, http: aiohttp.ClientSession):
    server.create_channel("c", "video/MP2T")
    url = server.channel_url("c")
    async with http.post(
        url + "/0", data=b"x", headers={"Content-Type": "application/octet-stream"}
    ) as resp:
        assert resp.status == 200
    resp, _ = await get(http, url + "/0")
    assert resp.headers["Content-Type"] == "video/MP2T"


# ---- lifecycle / end of stream --------------------------------------------------------------


async def test_delete_wakes_waiters_with_eos(server: TrickleServer, http: aiohttp.ClientSession):
    server.create_channel("c")
    url = server.channel_url("c")
    waiters = [asyncio.create_task(get(http, url + "/0")) for _ in range(3)]
    await wait_until(lambda: waiting(server, "c", 0) == 3)
    async with http.delete(url) as resp:
        assert resp.status == 200
    for task in waiters:
        resp, body = await task
        assert (resp.status, body) == (200, b"")
        assert resp.headers[HEADER_CLOSED] == "terminated"
    resp, _ = await get(http, url + "/0")
    assert resp.status == 404
    assert server.channel_names() == []


async def test_idle_post_answered_closed_on_delete(
    server: TrickleServer, http: aiohttp.ClientSession
):
    server.create_channel("c")
    url = server.channel_url("c")
    pending = await raw_post(url + "/0")  # headers only, like a preconnect
    await wait_until(lambda: server.channel("c") is not None and server.channel("c").segment(0))
    async with http.delete(url) as resp:
        assert resp.status == 200
    status, headers = await pending.response()
    assert status == 200
    assert headers[HEADER_CLOSED.lower()] == "terminated"
    assert headers[HEADER_SEQ.lower()] == "0"
    await pending.close()


async def test_delete_unknown_channel_and_segment(
    server: TrickleServer, http: aiohttp.ClientSession
):
    async with http.delete(server.channel_url("nope")) as resp:
        assert (resp.status, await resp.read()) == (400, b"Invalid stream\n")
    async with http.delete(server.channel_url("nope") + "/0") as resp:
        assert resp.status == 404
    server.create_channel("c")
    async with http.delete(server.channel_url("c") + "/3") as resp:
        assert (resp.status, await resp.read()) == (400, b"Nonexistent segment\n")


async def test_delete_seq_truncates_half_written_segment(
    server: TrickleServer, http: aiohttp.ClientSession
):
    server.create_channel("c")
    url = server.channel_url("c")
    writer = await raw_post(url + "/0")
    await writer.chunk(b"partial")
    async with http.get(url + "/0") as reader:
        assert await reader.content.readexactly(7) == b"partial"
        async with http.delete(url + "/0") as resp:
            assert resp.status == 200
        assert await reader.content.read() == b""  # EOF of the truncated body
    status, _ = await writer.response()
    assert status == 200  # the writer is told to stop
    await writer.close()


async def test_idle_channels_are_swept(make_server: ServerFactory, http: aiohttp.ClientSession):
    server = await make_server(idle_timeout=0.2, sweep_interval=0.05)
    server.create_channel("idle")
    server.create_channel("_internal")
    waiter = asyncio.create_task(get(http, server.channel_url("idle") + "/0"))
    await wait_until(lambda: "idle" not in server.channel_names())
    resp, _ = await waiter
    assert resp.headers[HEADER_CLOSED] == "terminated"
    assert server.channel_names() == ["_internal"]
    resp, _ = await get(http, server.channel_url("idle") + "/0")
    assert resp.status == 404


async def test_writes_keep_channel_alive(make_server: ServerFactory, http: aiohttp.ClientSession):
    server = await make_server(idle_timeout=3600)
    ch = server.create_channel("busy")
    ch.write_time -= 7200  # pretend it was created two hours ago
    await post(http, server.channel_url("busy") + "/0", b"fresh")
    assert server.sweep_idle() == []
    ch.write_time -= 7200
    assert server.sweep_idle() == ["busy"]


async def test_autocreate(make_server: ServerFactory, http: aiohttp.ClientSession):
    server = await make_server(autocreate=True)
    async with http.post(
        server.channel_url("made"), headers={"Expect-Content": "application/json"}
    ) as resp:
        assert resp.status == 200
    assert server.channel("made").content_type == "application/json"
    await post(http, server.channel_url("auto") + "/0", b"x")
    assert "auto" in server.channel_names()


async def test_http_create_needs_autocreate(server: TrickleServer, http: aiohttp.ClientSession):
    async with http.post(server.channel_url("x")) as resp:
        assert resp.status == 404
    server.create_channel("x")
    async with http.post(server.channel_url("x")) as resp:
        assert resp.status == 200


# ---- publishers and readers misbehaving -----------------------------------------------------


async def test_publisher_vanishing_mid_segment(server: TrickleServer, http: aiohttp.ClientSession):
    server.create_channel("c")
    url = server.channel_url("c")
    writer = await raw_post(url + "/0")
    await writer.chunk(b"k" * 1000)
    async with http.get(url + "/0") as reader:
        assert await reader.content.readexactly(1000) == b"k" * 1000
        writer.drop()
        assert await reader.content.read() == b""  # ours: the segment is closed
    await post(http, url + "/1", b"next")
    _, body = await get(http, url + "/1")
    assert body == b"next"


async def test_retry_after_zero_bytes_keeps_readers(
    server: TrickleServer, http: aiohttp.ClientSession
):
    server.create_channel("c")
    url = server.channel_url("c")
    reader = asyncio.create_task(get(http, url + "/0"))
    await wait_until(lambda: waiting(server, "c", 0) == 1)
    dead = await raw_post(url + "/0")
    dead.drop()  # gone before its first byte: the segment stays open for a retry
    await asyncio.sleep(0.05)
    assert not reader.done()
    await post(http, url + "/0", b"retried")
    resp, body = await reader
    assert (resp.status, body) == (200, b"retried")


async def test_republish_replaces_segment(server: TrickleServer, http: aiohttp.ClientSession):
    server.create_channel("c")
    url = server.channel_url("c")
    await post(http, url + "/0", b"first")
    await post(http, url + "/0", b"second")
    _, body = await get(http, url + "/0")
    assert body == b"second"


async def test_reset_releases_readers_of_hung_publisher(
    server: TrickleServer, http: aiohttp.ClientSession
):
    server.create_channel("c")
    url = server.channel_url("c")
    await post(http, url + "/0", b"zero")
    hung = await raw_post(url + "/1")
    await hung.chunk(b"half")
    async with http.get(url + "/1") as stuck:
        assert await stuck.content.readexactly(4) == b"half"
        async with http.post(url + "/-1", data=b"new", headers={HEADER_RESET: "1"}) as resp:
            assert resp.headers[HEADER_SEQ] == "2"  # lands at next write
        assert await stuck.content.read() == b""  # released, partial bytes kept
    _, body = await get(http, url + "/2")
    assert body == b"new"
    await hung.close()


async def test_reader_disconnect_frees_server(server: TrickleServer, http: aiohttp.ClientSession):
    server.create_channel("c")
    url = server.channel_url("c")
    writer = await raw_post(url + "/0")
    await writer.chunk(b"abc")
    other = await http.get(url + "/0")
    async with aiohttp.ClientSession() as leaving:
        resp = await leaving.get(url + "/0")
        assert await resp.content.readexactly(3) == b"abc"
        await wait_until(lambda: waiting(server, "c", 0) == 2)
        resp.close()
    await wait_until(lambda: waiting(server, "c", 0) == 1)  # the departed reader is gone
    await writer.chunk(b"def")
    await writer.end()
    assert (await writer.response())[0] == 200
    assert await other.content.read() == b"abcdef"
    other.release()
    _, body = await get(http, url + "/0")
    assert body == b"abcdef"  # a new GET replays from byte 0
    await writer.close()


async def test_waiting_reader_released_on_disconnect(
    make_server: ServerFactory, http: aiohttp.ClientSession
):
    """Also when mounted in an app whose runner does not cancel handlers (parent's default)."""
    trickle = TrickleServer(disconnect_poll=0.05)
    app = web.Application()
    trickle.add_routes(app)
    runner = web.AppRunner(app)  # handler_cancellation off
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        trickle.create_channel("c")
        url = f"http://127.0.0.1:{port}/ai/trickle/c/0"
        async with aiohttp.ClientSession() as leaving:
            task = asyncio.create_task(leaving.get(url))
            await wait_until(lambda: waiting(trickle, "c", 0) == 1)
            task.cancel()
        await wait_until(lambda: waiting(trickle, "c", 0) == 0)
    finally:
        await runner.cleanup()
    assert trickle.channel_names() == []  # cleanup closed the channels


async def test_many_readers_identical(server: TrickleServer, http: aiohttp.ClientSession):
    server.create_channel("c")
    url = server.channel_url("c") + "/0"
    readers = [asyncio.create_task(get(http, url)) for _ in range(50)]
    await wait_until(lambda: waiting(server, "c", 0) == 50)
    chunks = [bytes([i]) * 3001 for i in range(20)]
    await post(http, url, *chunks)
    expected = b"".join(chunks)
    for task in readers:
        resp, body = await task
        assert resp.status == 200 and body == expected


# ---- size ---------------------------------------------------------------------------------


async def test_large_segment_streams_before_upload_ends(
    make_server: ServerFactory, http: aiohttp.ClientSession
):
    server = await make_server(max_segment_bytes=64 * 1024 * 1024)
    server.create_channel("big")
    url = server.channel_url("big") + "/0"
    block = bytes(range(256)) * 1024  # 256 KiB
    blocks = 128  # 32 MiB
    gate = asyncio.Event()
    chunks = [block] * blocks + [b"end"]
    upload = asyncio.create_task(post(http, url, *chunks, gate=gate))
    digest = hashlib.sha256()
    async with http.get(url) as resp:
        got = 0
        while got < blocks * len(block):  # all but the gated tail arrives during the upload
            data = await resp.content.readany()
            digest.update(data)
            got += len(data)
        assert not upload.done()
        gate.set()
        digest.update(await resp.content.read())
    assert (await upload).status == 200
    assert digest.digest() == hashlib.sha256(b"".join(chunks)).digest()


async def test_segment_size_cap(make_server: ServerFactory, http: aiohttp.ClientSession):
    server = await make_server(max_segment_bytes=100_000)
    server.create_channel("c")
    url = server.channel_url("c")
    async with http.post(url + "/0", data=b"x" * 100_001) as resp:  # sized: refused up front
        assert (resp.status, await resp.read()) == (413, b"Segment too large\n")
    writer = await raw_post(url + "/1")
    reader = asyncio.create_task(get(http, url + "/1"))
    for _ in range(3):
        await writer.chunk(b"y" * 40_000)
    status, _ = await writer.response()
    assert status == 413
    resp, body = await reader
    assert resp.status == 200, (resp.status, resp.headers, body)
    assert body == b"y" * 100_000  # cut at the cap
    await writer.close()
    assert server.channel("c").buffered_bytes == 100_000


async def test_ring_bounds_memory(server: TrickleServer, http: aiohttp.ClientSession):
    server.create_channel("c")
    url = server.channel_url("c")
    for seq in range(20):
        await post(http, url + f"/{seq}", b"z" * 10_000)
    assert server.channel("c").buffered_bytes == 5 * 10_000


# ---- mounting -----------------------------------------------------------------------------


async def test_mount_under_custom_prefix(http: aiohttp.ClientSession):
    trickle = TrickleServer()
    app = web.Application()
    trickle.add_routes(app, "/custom/path")

    async def health(_req: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app.router.add_get("/health", health)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        trickle.create_channel("c")
        await post(http, base + "/custom/path/c/0", b"mounted")
        _, body = await get(http, base + "/custom/path/c/0")
        assert body == b"mounted"
        resp, _ = await get(http, base + "/health")
        assert resp.status == 200
        assert trickle.is_trickle_path("/custom/path/c/0")
        assert not trickle.is_trickle_path("/health")
    finally:
        await runner.cleanup()


async def test_server_close_ends_waiters(make_server: ServerFactory):
    server = await make_server()
    server.create_channel("c")
    url = server.channel_url("c") + "/0"
    async with aiohttp.ClientSession() as http:
        waiter = asyncio.create_task(get(http, url))
        await wait_until(lambda: waiting(server, "c", 0) == 1)
        await server.close()
        resp, body = await waiter
        assert resp.headers[HEADER_CLOSED] == "terminated" and body == b""
        with pytest.raises(aiohttp.ClientConnectionError):
            await get(http, url)


async def test_restart_from_lower_seq_drops_stale_segments(
    server: TrickleServer, http: aiohttp.ClientSession
):
    """Ours, not go-livepeer: old finished segments ahead of a restarted publisher are not
    served again under their reused seq."""
    server.create_channel("c")
    url = server.channel_url("c")
    for seq in range(8):
        await post(http, url + f"/{seq}", b"old%d" % seq)
    await post(http, url + "/0", b"new0")  # a publisher restarted at seq 0
    resp, body = await get(http, url + "/next")
    assert body == b"1"
    resp, body = await get(http, url + "/4")  # go-livepeer would serve "old4" here
    assert (resp.status, resp.headers[HEADER_LATEST]) == (STATUS_SEQ_UNAVAILABLE, "1")
    for seq in (1, 2, 3):
        await post(http, url + f"/{seq}", b"new%d" % seq)
    reader = asyncio.create_task(get(http, url + "/-1"))
    await wait_until(lambda: waiting(server, "c", 4) == 1)
    await post(http, url + "/4", b"new4")
    resp, body = await reader
    assert (resp.status, body) == (200, b"new4")
