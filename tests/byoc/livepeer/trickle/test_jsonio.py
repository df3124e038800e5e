"""JSON over trickle: documents per segment (control/events) and JSON lines (data)."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from byoc.livepeer.standin.trickle_server import TrickleServer
from byoc.livepeer.trickle import (
    JsonLinesPublisher,
    JsonSegmentPublisher,
    TricklePublisher,
    TrickleSubscriber,
    publish_json,
    read_json_lines,
    read_json_segments,
)
from byoc.livepeer.trickle.constants import KEEPALIVE_MESSAGE
from tests.byoc.livepeer.conftest import raw_post, wait_until


async def first_n(agen, n: int) -> list:
    out = []
    async for item in agen:
        out.append(item)
        if len(out) == n:
            break
    return out


async def test_control_message_larger_than_32k_arrives_whole(server: TrickleServer):
    server.create_channel("ctl", "application/json")
    url = server.channel_url("ctl")
    big = {"prompt": "x" * 200_000, "nested": {"list": list(range(5000))}}
    async with TrickleSubscriber(url, start_seq=-1) as sub:
        reader = asyncio.create_task(first_n(read_json_segments(sub), 1))
        await wait_until(lambda: server.channel("ctl").segment(0) is not None)
        async with TricklePublisher(url, "application/json") as pub:
            await publish_json(pub, big)
            assert await reader == [big]


async def test_keepalives_skipped_unless_asked(server: TrickleServer):
    server.create_channel("ctl", "application/json")
    url = server.channel_url("ctl")
    messages = [KEEPALIVE_MESSAGE, {"a": 1}, KEEPALIVE_MESSAGE, {"b": 2}]
    async with TricklePublisher(url, "application/json", delete_on_close=False) as pub:
        for msg in messages:
            await publish_json(pub, msg)
    # The ring still holds all four: read them twice, with and without the filter.
    async with TrickleSubscriber(url, start_seq=0) as sub:
        assert await first_n(read_json_segments(sub), 2) == [{"a": 1}, {"b": 2}]
    async with TrickleSubscriber(url, start_seq=0) as sub:
        assert await first_n(read_json_segments(sub, skip_keepalive=False), 4) == messages


async def test_bad_and_empty_segments_are_skipped(
    server: TrickleServer, http: aiohttp.ClientSession
):
    server.create_channel("ctl", "application/json")
    url = server.channel_url("ctl")
    for seq, body in enumerate([b"{not json", b"", b'{"ok": true}']):
        async with http.post(f"{url}/{seq}", data=body) as resp:
            assert resp.status == 200
    async with TrickleSubscriber(url, start_seq=0) as sub:
        assert await first_n(read_json_segments(sub), 1) == [{"ok": True}]


async def test_oversized_document_is_skipped(server: TrickleServer):
    server.create_channel("ctl", "application/json")
    url = server.channel_url("ctl")
    async with TricklePublisher(url, "application/json", delete_on_close=False) as pub:
        await publish_json(pub, {"big": "y" * 5000})
        await publish_json(pub, {"small": 1})
    async with TrickleSubscriber(url, start_seq=0) as sub:
        assert await first_n(read_json_segments(sub, max_bytes=1000), 1) == [{"small": 1}]


async def test_events_one_document_per_segment(server: TrickleServer, http: aiohttp.ClientSession):
    server.create_channel("ev", "application/json")
    url = server.channel_url("ev")
    events = JsonSegmentPublisher(TricklePublisher(url, "application/json", delete_on_close=False))
    docs = [
        {"event": {"type": "status", "n": i}, "queue_event_type": "ai_stream_status"}
        for i in range(6)
    ]
    await asyncio.gather(*(events.send(d) for d in docs))
    await events.close()
    bodies = []
    for seq in range(1, 6):  # seq 0 has left the ring of 5
        async with http.get(f"{url}/{seq}") as resp:
            assert resp.headers["Content-Type"] == "application/json"
            bodies.append(json.loads(await resp.read()))
    assert sorted(b["event"]["n"] for b in bodies) == [1, 2, 3, 4, 5]


async def test_jsonl_one_segment_per_message(server: TrickleServer, http: aiohttp.ClientSession):
    server.create_channel("data", "application/jsonl")
    url = server.channel_url("data")
    data = JsonLinesPublisher(TricklePublisher(url, "application/jsonl", delete_on_close=False))
    await data.send({"a": 1})
    await data.send(["x", "y"])
    await data.close()
    for seq, expected in [(0, b'{"a":1}\n'), (1, b'["x","y"]\n')]:
        async with http.get(f"{url}/{seq}") as resp:
            assert await resp.read() == expected


async def test_jsonl_batches_within_flush_interval(
    server: TrickleServer, http: aiohttp.ClientSession
):
    server.create_channel("data", "application/jsonl")
    url = server.channel_url("data")
    data = JsonLinesPublisher(
        TricklePublisher(url, "application/jsonl", delete_on_close=False), flush_interval=0.05
    )
    for i in range(3):
        await data.send({"i": i})
    await wait_until(lambda: server.channel("data").next_write == 1)
    await data.close()
    async with http.get(f"{url}/0") as resp:
        assert await resp.read() == b'{"i":0}\n{"i":1}\n{"i":2}\n'
    assert server.channel("data").next_write == 1


async def test_jsonl_stream_mode_sends_lines_live_and_rotates(server: TrickleServer):
    server.create_channel("data", "application/jsonl")
    url = server.channel_url("data")
    data = JsonLinesPublisher(
        TricklePublisher(url, "application/jsonl", delete_on_close=False),
        mode="stream",
        rotate_after=3600,
    )
    async with TrickleSubscriber(url, start_seq=-1) as sub:
        lines = read_json_lines(sub)
        await data.send({"n": 1})
        assert await anext(lines) == {"n": 1}  # while its segment is still open
        await data.send({"n": 2})
        assert await anext(lines) == {"n": 2}
        assert server.channel("data").next_write == 1  # both lines in segment 0
        data.rotate_after = 0  # next send starts a new segment
        await data.send({"n": 3})
        assert await anext(lines) == {"n": 3}
        assert server.channel("data").next_write == 2
        await lines.aclose()
    await data.close()


async def test_jsonl_keepalive_is_an_empty_segment(server: TrickleServer):
    server.create_channel("data", "application/jsonl")
    url = server.channel_url("data")
    data = JsonLinesPublisher(
        TricklePublisher(url, "application/jsonl", delete_on_close=False), keepalive_interval=0.1
    )
    await wait_until(lambda: server.channel("data").next_write >= 2)
    seg = server.channel("data").segment(0)
    assert seg is not None and seg.closed and seg.size == 0
    await data.send({"after": "keepalives"})
    async with TrickleSubscriber(url, start_seq=0) as sub:
        assert await first_n(read_json_lines(sub), 1) == [{"after": "keepalives"}]
    await data.close()


async def test_jsonl_reader_handles_split_and_unterminated_lines(
    server: TrickleServer, http: aiohttp.ClientSession
):
    server.create_channel("data", "application/jsonl")
    url = server.channel_url("data")
    async with TrickleSubscriber(url, start_seq=-1) as sub:
        lines = read_json_lines(sub, max_line_bytes=100)
        first = asyncio.create_task(anext(lines))
        await wait_until(
            lambda: (
                (seg := server.channel("data").segment(0)) is not None and seg.readers_waiting == 1
            )
        )
        writer = await raw_post(url + "/0")
        await writer.chunk(b'{"spl')
        await writer.chunk(b'it": 1}\n{"too_long": "' + b"z" * 200)
        await writer.chunk(b'"}\n\n{"last": "no newline"}')
        await writer.end()
        assert await first == {"split": 1}
        assert await anext(lines) == {"last": "no newline"}  # the segment's end ends the line
        await lines.aclose()
        await writer.close()
