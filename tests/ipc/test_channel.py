"""The control channel over a real socketpair: framing, validation, bad frames and closing."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator

import msgspec
import pytest

from ipc.channel import ChannelClosed, ControlChannel
from ipc.messages import Heartbeat, JobRequest, Shutdown


@pytest.fixture
async def pair() -> AsyncIterator[tuple[ControlChannel, socket.socket]]:
    """Our channel on one end, a raw socket on the other (to send whatever bytes we like)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    channel = await ControlChannel.from_socket(ours, peer="test")
    yield channel, theirs
    await channel.close()
    theirs.close()


async def test_messages_flow_both_ways() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    left = await ControlChannel.from_socket(a, peer="left")
    right = await ControlChannel.from_socket(b, peer="right")
    try:
        await left.send(Heartbeat(worker="ingest", seq=1, monotonic_ns=5))
        await right.send(Shutdown(reason="bye"))
        assert await right.recv() == Heartbeat(worker="ingest", seq=1, monotonic_ns=5)
        assert await left.recv() == Shutdown(reason="bye")
    finally:
        await left.close()
        await right.close()


async def test_large_message_arrives_whole() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    left = await ControlChannel.from_socket(a, peer="left")
    right = await ControlChannel.from_socket(b, peer="right")
    payload = bytes(range(256)) * 40_000  # 10 MB, many socket buffers
    try:
        send = asyncio.create_task(left.send(JobRequest(job_id="j", kind="k", payload=payload)))
        received = await right.recv()
        await send
        assert isinstance(received, JobRequest)
        assert received.payload == payload
    finally:
        await left.close()
        await right.close()


def frame(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


async def test_malformed_messages_are_skipped_and_counted(
    pair: tuple[ControlChannel, socket.socket],
) -> None:
    channel, raw = pair
    good = msgspec.msgpack.encode({"type": "shutdown", "reason": "after the junk"})
    raw.sendall(
        frame(b"\xc1\xc1 not msgpack")
        + frame(msgspec.msgpack.encode({"type": "no_such_message"}))
        + frame(msgspec.msgpack.encode({"type": "heartbeat", "worker": 1}))
        + frame(good)
    )
    assert await asyncio.wait_for(channel.recv(), 60) == Shutdown(reason="after the junk")
    assert channel.rejected == 3


async def test_oversized_frame_is_discarded_without_losing_the_framing(
    pair: tuple[ControlChannel, socket.socket],
) -> None:
    channel, raw = pair
    channel.max_frame_bytes = 1024
    raw.sendall(frame(b"x" * 5000) + frame(msgspec.msgpack.encode({"type": "shutdown"})))
    assert await asyncio.wait_for(channel.recv(), 60) == Shutdown()
    assert channel.rejected == 1


async def test_peer_closing_raises_channel_closed(
    pair: tuple[ControlChannel, socket.socket],
) -> None:
    channel, raw = pair
    raw.sendall(struct.pack(">I", 10) + b"abc")  # a frame cut short by the peer's exit
    raw.close()
    with pytest.raises(ChannelClosed):
        await asyncio.wait_for(channel.recv(), 60)


async def test_send_after_close_raises(pair: tuple[ControlChannel, socket.socket]) -> None:
    channel, _ = pair
    await channel.close()
    with pytest.raises(ChannelClosed):
        await channel.send(Shutdown())
