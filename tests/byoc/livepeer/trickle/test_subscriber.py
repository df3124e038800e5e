"""TrickleSubscriber with our publisher and server: the edge cases of a live channel."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os

import aiohttp
import pytest

from byoc.livepeer.standin.trickle_server import TrickleServer
from byoc.livepeer.trickle import (
    SegmentReadError,
    SubscribeError,
    TricklePublisher,
    TrickleSubscriber,
)
from tests.byoc.livepeer.conftest import (
    ServerFactory,
    TcpProxy,
    port_of,
    raw_post,
    reserved_port,
    wait_until,
)


async def publish(pub: TricklePublisher, *bodies: bytes) -> None:
    for body in bodies:
        async with pub.segment() as seg:
            await seg.write(body)
        assert await seg.wait()


def parked(server: TrickleServer, channel: str, seq: int) -> int:
    """Readers waiting on segment ``seq`` at the server."""
    ch = server.channel(channel)
    seg = ch.segment(seq) if ch is not None else None
    return seg.readers_waiting if seg is not None else 0


async def collect(sub: TrickleSubscriber, count: int | None = None) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    async for segment in sub:
        out.append((segment.seq, await segment.read_all()))
        if count is not None and len(out) == count:
            break
    return out


async def test_follows_segments_until_channel_closes(server: TrickleServer):
    server.create_channel("c", "video/MP2T")
    url = server.channel_url("c")
    async with TrickleSubscriber(url, start_seq=-1) as sub:
        reader = asyncio.create_task(collect(sub))
        await wait_until(lambda: server.channel("c").segment(0) is not None)
        async with TricklePublisher(url, "video/mp2t") as pub:  # deletes the channel on close
            await publish(pub, b"zero", b"one", b"two")
        assert await reader == [(0, b"zero"), (1, b"one"), (2, b"two")]
        assert sub.closed


async def test_segment_streams_before_it_ends(server: TrickleServer):
    server.create_channel("c")
    url = server.channel_url("c")
    async with TricklePublisher(url, "video/mp2t") as pub, TrickleSubscriber(url) as sub:
        seg = await pub.next_segment()
        await seg.write(b"early")
        segment = await sub.next_segment()
        assert segment is not None and segment.seq == 0
        chunks = segment.chunks()
        assert await anext(chunks) == b"early"
        await seg.write(b"late")
        await seg.close()
        assert b"".join([c async for c in chunks]) == b"late"
        assert segment.complete


async def test_late_join_current_and_next(server: TrickleServer):
    server.create_channel("c")
    url = server.channel_url("c")
    async with TricklePublisher(url, "video/mp2t") as pub:
        await publish(pub, b"s0", b"s1")
        open_seg = await pub.next_segment()  # seq 2, being written
        await open_seg.write(b"s2-head|")
        async with TrickleSubscriber(url, start_seq=-2) as current:
            segment = await current.next_segment()
            assert segment is not None and segment.seq == 2
            assert await anext(segment.chunks()) == b"s2-head|"  # from the segment's first byte
        async with TrickleSubscriber(url, start_seq=-1) as upcoming:
            pending = asyncio.create_task(collect(upcoming, 1))
            await wait_until(lambda: parked(server, "c", 3) == 1)
            await open_seg.write(b"s2-tail")
            await open_seg.close()
            await publish(pub, b"s3")
            assert await pending == [(3, b"s3")]


async def test_jumps_to_latest_on_470(server: TrickleServer):
    server.create_channel("c")
    url = server.channel_url("c")
    async with TricklePublisher(url, "video/mp2t") as pub:
        await publish(pub, *[b"s%d" % i for i in range(10)])
        async with TrickleSubscriber(url, start_seq=0) as sub:
            pending = asyncio.create_task(collect(sub, 1))
            await wait_until(lambda: sub.jumps == 1)
            await publish(pub, b"s10")
            assert await pending == [(10, b"s10")]


async def test_recovers_from_seq_gap(server: TrickleServer, http: aiohttp.ClientSession):
    server.create_channel("c")
    url = server.channel_url("c")
    for seq in (0, 1):
        async with http.post(f"{url}/{seq}", data=b"s%d" % seq) as resp:
            assert resp.status == 200
    got: list[tuple[int, bytes]] = []

    async def read_until_live(sub: TrickleSubscriber) -> None:
        async for segment in sub:
            got.append((segment.seq, await segment.read_all()))
            if segment.seq >= 9:
                return

    async with TrickleSubscriber(url, start_seq=2) as sub:
        reader = asyncio.create_task(read_until_live(sub))
        await wait_until(lambda: parked(server, "c", 2) == 1)
        for seq in range(3, 30):  # the publisher skipped seq 2
            if reader.done():
                break
            async with http.post(f"{url}/{seq}", data=b"s%d" % seq) as resp:
                assert resp.status == 200
            await asyncio.sleep(0.01 if seq >= 8 else 0)
        await reader
    # seq 2 ends empty when seq 7 reuses its slot; the subscriber then goes on in order
    assert got[0] == (2, b"")
    seqs = [seq for seq, _ in got[1:]]
    assert seqs == sorted(set(seqs)) and seqs[-1] >= 9
    assert all(body == b"s%d" % seq for seq, body in got[1:])


async def test_channel_closed_while_reading(server: TrickleServer):
    server.create_channel("c")
    url = server.channel_url("c")
    pub = TricklePublisher(url, "video/mp2t")
    seg = await pub.next_segment()
    await seg.write(b"partial")
    async with TrickleSubscriber(url) as sub:
        segment = await sub.next_segment()
        assert segment is not None
        chunks = segment.chunks()
        assert await anext(chunks) == b"partial"
        server.close_channel("c")
        assert [c async for c in chunks] == []  # the body just ends
        assert await sub.next_segment() is None
        assert sub.closed
    await pub.close()


async def test_missing_channel_is_end_of_stream(server: TrickleServer):
    async with TrickleSubscriber(server.channel_url("nope")) as sub:
        assert await sub.next_segment() is None
        assert [s async for s in sub] == []


async def test_slow_subscriber_skips_ahead_without_slowing_publisher(server: TrickleServer):
    server.create_channel("c")
    url = server.channel_url("c")
    body = os.urandom(200_000)
    published = asyncio.Event()
    async with TricklePublisher(url, "video/mp2t") as pub, TrickleSubscriber(url) as sub:
        await publish(pub, body)
        first = await sub.next_segment()
        assert first is not None and first.seq == 0
        chunks = first.chunks()
        got = await anext(chunks)

        async def publish_fast() -> None:
            await publish(pub, *[body] * 30)
            published.set()

        fast = asyncio.create_task(publish_fast())
        await published.wait()  # the publisher finished while we hold segment 0 half-read
        await fast
        async for chunk in chunks:
            got += chunk
        assert got == body  # the held segment is intact
        assert server.channel("c").buffered_bytes <= 5 * len(body)

        async def keep_publishing() -> None:
            while True:
                await publish(pub, body)
                await asyncio.sleep(0.01)

        live = asyncio.create_task(keep_publishing())
        later = await collect(sub, 2)
        live.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await live
    # seq 1 was already connected (preconnect) and is delivered whole; then 470 -> live edge
    assert later[0] == (1, body)
    assert sub.jumps >= 1 and later[1][0] >= 31
    assert later[1][1] == body


async def test_disconnect_mid_segment_leaves_others_alone(server: TrickleServer):
    server.create_channel("c")
    url = server.channel_url("c")
    pub = TricklePublisher(url, "video/mp2t")
    seg = await pub.next_segment()
    await seg.write(b"abc")
    leaving = TrickleSubscriber(url)
    staying = TrickleSubscriber(url)
    seg_leaving = await leaving.next_segment()
    seg_staying = await staying.next_segment()
    assert seg_leaving is not None and seg_staying is not None
    assert await anext(seg_leaving.chunks()) == b"abc"
    await leaving.close()
    await seg.write(b"def")
    await seg.close()
    assert await seg.wait()
    assert await seg_staying.read_all() == b"abcdef"
    await staying.close()
    async with TrickleSubscriber(url, start_seq=0) as again:
        replay = await again.next_segment()
        assert replay is not None and await replay.read_all() == b"abcdef"
    await pub.close()


async def test_very_large_segment(make_server: ServerFactory):
    server = await make_server(max_segment_bytes=128 * 1024 * 1024)
    server.create_channel("big")
    url = server.channel_url("big")
    block = os.urandom(1024 * 1024)
    blocks = 48
    async with TricklePublisher(url, "video/mp2t") as pub, TrickleSubscriber(url) as sub:
        seg = await pub.next_segment()
        await seg.write(block)
        segment = await sub.next_segment()
        assert segment is not None
        digest = hashlib.sha256()
        received = 0

        async def write_rest() -> None:
            for _ in range(blocks - 1):
                await seg.write(block)
            await seg.close()

        writer = asyncio.create_task(write_rest())
        async for chunk in segment.chunks():
            if received == 0:
                assert not writer.done() or not seg.failed  # streaming, not store-and-forward
            digest.update(chunk)
            received += len(chunk)
        await writer
        assert await seg.wait()
    assert received == blocks * len(block)
    assert digest.digest() == hashlib.sha256(block * blocks).digest()


async def test_oversized_segment_is_cut(make_server: ServerFactory):
    server = await make_server(max_segment_bytes=1_000_000)
    server.create_channel("c")
    url = server.channel_url("c")
    async with TricklePublisher(url, "video/mp2t") as pub, TrickleSubscriber(url) as sub:
        seg = await pub.next_segment()
        for _ in range(20):
            await seg.write(b"q" * 100_000)
        await seg.close()
        assert not await seg.wait()  # 413
        segment = await sub.next_segment()
        assert segment is not None and len(await segment.read_all()) == 1_000_000


async def test_publisher_restart_with_reset(server: TrickleServer):
    server.create_channel("c")
    url = server.channel_url("c")
    async with TrickleSubscriber(url, start_seq=0) as sub:
        hung = await raw_post(url + "/0")  # old publisher: stuck mid-segment
        await hung.chunk(b"old-partial")
        first = await sub.next_segment()
        assert first is not None
        reading = asyncio.create_task(first.read_all())
        await asyncio.sleep(0.05)
        assert not reading.done()
        async with TricklePublisher(url, "video/mp2t", start_seq=None, reset=True) as pub:
            await publish(pub, b"new0", b"new1")
            assert await reading == b"old-partial"
            assert await collect(sub, 2) == [(1, b"new0"), (2, b"new1")]
        await hung.close()


async def test_restarted_publisher_from_zero_is_followed(server: TrickleServer):
    """A Python-style publisher restarts at seq 0 on a channel that is at seq 8."""
    server.create_channel("c")
    url = server.channel_url("c")
    async with TricklePublisher(url, "video/mp2t", delete_on_close=False) as pub:
        await publish(pub, *[b"a%d" % i for i in range(8)])
    async with TrickleSubscriber(url) as sub:
        first = await sub.next_segment()
        assert first is not None and (first.seq, await first.read_all()) == (7, b"a7")
        got: list[tuple[int, bytes]] = []

        async def read_until_new_stream() -> None:
            async for segment in sub:
                got.append((segment.seq, await segment.read_all()))
                if got[-1][1].startswith(b"b"):
                    return

        reader = asyncio.create_task(read_until_new_stream())
        async with TricklePublisher(url, "video/mp2t", delete_on_close=False) as pub:
            for i in range(30):
                if reader.done():
                    break
                await publish(pub, b"b%d" % i)
                await asyncio.sleep(0.01)
        await asyncio.wait_for(reader, 60)
    # the reader's preconnect ends empty, then 470 sends it to the new head, where it waits
    assert got[0] == (8, b"")
    assert len(got) == 2
    seq, body = got[-1]
    assert body == b"b%d" % seq


async def test_reconnects_with_backoff_until_server_is_up(make_server: ServerFactory):
    with reserved_port() as port:
        url = f"http://127.0.0.1:{port}/ai/trickle/c"
        sub = TrickleSubscriber(url, start_seq=0, max_retries=20, retry_backoff=0.02)
        pending = asyncio.create_task(sub.next_segment())
        await asyncio.sleep(0.1)
        assert not pending.done()
    server = await make_server(port=port)
    server.create_channel("c")
    async with TricklePublisher(url, "video/mp2t", delete_on_close=False) as pub:
        await publish(pub, b"hello")
    segment = await pending
    assert segment is not None and await segment.read_all() == b"hello"
    await sub.close()


async def test_gives_up_after_max_retries():
    with reserved_port() as port:
        sub = TrickleSubscriber(
            f"http://127.0.0.1:{port}/ai/trickle/c", max_retries=2, retry_backoff=0.01
        )
        with pytest.raises(SubscribeError):
            await sub.next_segment()
        assert sub.closed
        await sub.close()


async def test_server_restart_ends_stream(make_server: ServerFactory):
    server = await make_server()
    server.create_channel("c")
    url = server.channel_url("c")
    async with TrickleSubscriber(url, start_seq=-1) as sub:
        waiting = asyncio.create_task(sub.next_segment())
        await wait_until(lambda: server.channel("c").segment(0) is not None)
        await server.close()  # waiters get Lp-Trickle-Closed
        assert await waiting is None
    server2 = await make_server(port=port_of(url))  # fresh server: the channel is gone
    assert server2.channel_names() == []
    async with TrickleSubscriber(url) as sub:
        assert await sub.next_segment() is None


async def test_broken_segment_raises_and_subscriber_goes_on(server: TrickleServer, proxy_factory):
    server.create_channel("c")
    proxy: TcpProxy = await proxy_factory(port_of(server.base_url))
    proxy.cut_downstream_after = 150_000
    url = server.channel_url("c")
    async with TricklePublisher(url, "video/mp2t", delete_on_close=False) as pub:
        await publish(pub, os.urandom(400_000))
        async with TrickleSubscriber(proxy.url(url), start_seq=0) as sub:
            broken = await sub.next_segment()
            assert broken is not None
            with pytest.raises(SegmentReadError):
                await broken.read_all()
            assert not broken.complete
            reader = asyncio.create_task(collect(sub, 1))
            await publish(pub, b"fine")
            assert await reader == [(1, b"fine")]


async def test_long_wait_is_not_a_timeout(server: TrickleServer):
    server.create_channel("c")
    url = server.channel_url("c")
    async with TrickleSubscriber(url, connect_timeout=0.2) as sub:
        pending = asyncio.create_task(sub.next_segment())
        await asyncio.sleep(0.6)  # waiting on headers for longer than any client timeout
        assert not pending.done()
        async with TricklePublisher(url, "video/mp2t") as pub:
            await publish(pub, b"finally")
            segment = await pending
            assert segment is not None and await segment.read_all() == b"finally"


async def test_long_wait_cut_is_asked_again(server: TrickleServer, proxy_factory):
    """A GET parked for long and then cut (idle limits on the way) is re-issued without counting
    as an error, however often it happens."""
    server.create_channel("c")
    proxy: TcpProxy = await proxy_factory(port_of(server.base_url))
    url = server.channel_url("c")
    async with TrickleSubscriber(proxy.url(url), max_retries=1, preconnect=False) as sub:
        sub.long_wait_s = 0.05
        pending = asyncio.create_task(sub.next_segment())
        for _ in range(4):
            await wait_until(lambda: parked(server, "c", 0) == 1)
            await asyncio.sleep(0.1)
            accepted = proxy.accepted
            assert proxy.drop_all() == 1
            await wait_until(lambda before=accepted: proxy.accepted > before)  # asked again
        await wait_until(lambda: parked(server, "c", 0) == 1)
        assert not pending.done()
        async with TricklePublisher(url, "video/mp2t") as pub:
            await publish(pub, b"at last")
            segment = await pending
            assert segment is not None and await segment.read_all() == b"at last"
