"""Helpers for the stream tests: rings owned by the test, a recorder standing in for the
parent's control channel, live publishing of MPEG-TS segments, ring reading, and real worker
processes spawned and driven the way the parent's supervisor does."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import secrets
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from multiprocessing.process import BaseProcess
from typing import TypeVar

from benchmarks.media.clip import TsSegment
from byoc.livepeer.standin.trickle_server import TrickleServer
from byoc.livepeer.trickle import TricklePublisher
from ipc.channel import ChannelClosed, ControlChannel
from ipc.child import WorkerSpec
from ipc.frame import Frame, FrameFlag
from ipc.messages import Message, Ready, Shutdown
from ipc.ring import FrameRing, RingSpec

CONTENT_TYPE = "video/MP2T"
_SPAWN = multiprocessing.get_context("spawn")
M = TypeVar("M", bound=Message)


def ring_spec(
    direction: str = "in",
    *,
    width: int = 256,
    height: int = 192,
    slots: int = 32,  # deep enough that a loaded test machine drops nothing
    pixel_format: str = "yuv420p",
) -> RingSpec:
    """A spec with a fresh stream token, named like the parent names its rings."""
    return RingSpec.for_stream(
        secrets.token_hex(4),
        direction,
        slots=slots,
        max_width=width,
        max_height=height,
        pixel_format=pixel_format,
    )


@asynccontextmanager
async def owned_ring(spec: RingSpec) -> AsyncIterator[FrameRing]:
    """Create a ring as the parent does; closed and unlinked on exit."""
    ring = FrameRing.create(spec)
    try:
        yield ring
    finally:
        ring.close()
        ring.unlink()


class SentMessages:
    """Stands in for the parent's control channel: a stream's ``send`` records each message
    here instead of writing it to the socket, and tests wait for the ones they expect."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._changed = asyncio.Event()

    async def send(self, message: Message) -> None:
        self.messages.append(message)
        self._changed.set()

    def of(self, kind: type[M]) -> list[M]:
        return [m for m in self.messages if isinstance(m, kind)]

    async def wait_for(
        self, kind: type[M], predicate: Callable[[M], bool] = lambda m: True, timeout: float = 60.0
    ) -> M:
        """The first recorded message of ``kind`` matching ``predicate`` (waits for it)."""
        deadline = time.monotonic() + timeout
        while True:
            for message in self.of(kind):
                if predicate(message):
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {kind.__name__} arrived; got {self.messages!r}"[:2000])
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass


@asynccontextmanager
async def trickle_channel(name_prefix: str = "in") -> AsyncIterator[tuple[TrickleServer, str, str]]:
    """A trickle server on 127.0.0.1:0 with one MPEG-TS channel: ``(server, name, url)``."""
    async with TrickleServer() as server:
        name = f"{name_prefix}-{secrets.token_hex(4)}"
        server.create_channel(name, CONTENT_TYPE)
        yield server, name, server.channel_url(name)


async def publish_segments(
    publisher: TricklePublisher,
    segments: Iterable[TsSegment | bytes],
    *,
    frame_interval: float = 0.004,
) -> None:
    """Publish segments as a live source does: each frame's bytes as soon as they exist."""
    for segment in segments:
        async with publisher.segment() as writer:
            parts = [segment] if isinstance(segment, bytes) else segment.frame_chunks
            for chunk in parts:
                await writer.write(chunk)
                await asyncio.sleep(frame_interval)
            if isinstance(segment, TsSegment) and segment.tail:
                await writer.write(segment.tail)


async def read_frames(
    ring: FrameRing,
    count: int,
    *,
    timeout: float = 30,
    until_end: bool = False,
) -> list[Frame]:
    """Copies of the next ``count`` frames of a ring (or up to ``END_OF_STREAM``)."""
    frames: list[Frame] = []
    deadline = time.monotonic() + timeout
    with ring.reader() as reader:
        while len(frames) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            frame = await reader.read_async(copy=True, timeout=remaining)
            if frame is None:
                break
            frames.append(frame)
            if until_end and frame.flags & FrameFlag.END_OF_STREAM:
                break
    return frames


class WorkerProcess:
    """A worker spawned as the supervisor spawns it (``spawn`` start method, a socketpair
    control channel); the test plays the parent: it sends messages and records replies."""

    def __init__(self, entry: Callable[[WorkerSpec], None], name: str) -> None:
        self.entry = entry
        self.name = name
        self.received = SentMessages()
        self.process: BaseProcess | None = None
        self.channel: ControlChannel | None = None
        self._receiver: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None and self.process.pid is not None
        return self.process.pid

    async def start(self) -> Ready:
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        spec = WorkerSpec(name=self.name, control=child_sock, heartbeat_interval_s=0.2)
        process = _SPAWN.Process(target=self.entry, args=(spec,), daemon=True)
        try:
            process.start()
        finally:
            child_sock.close()
        self.process = process
        self.received = SentMessages()
        self.channel = await ControlChannel.from_socket(parent_sock, peer=self.name)
        self._receiver = asyncio.create_task(self._receive(self.channel, self.received))
        return await self.received.wait_for(Ready, timeout=60)

    @staticmethod
    async def _receive(channel: ControlChannel, into: SentMessages) -> None:
        with contextlib.suppress(ChannelClosed):
            while True:
                await into.send(await channel.recv())

    async def send(self, message: Message) -> None:
        assert self.channel is not None
        await self.channel.send(message)

    async def kill(self) -> None:
        """SIGKILL, as a crash or the supervisor's hung-worker handling does."""
        assert self.process is not None
        os.kill(self.pid, signal.SIGKILL)
        await asyncio.to_thread(self.process.join, 10)
        await self._close_channel()

    async def stop(self) -> None:
        """Ask for a clean exit; kill after a grace period."""
        process = self.process
        if process is None:
            return
        if process.is_alive() and self.channel is not None:
            with contextlib.suppress(ChannelClosed, OSError):
                await self.channel.send(Shutdown(reason="test over"))
            await asyncio.to_thread(process.join, 10)
        if process.is_alive():
            process.kill()
            await asyncio.to_thread(process.join, 10)
        await self._close_channel()
        self.process = None

    async def _close_channel(self) -> None:
        if self._receiver is not None:
            self._receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._receiver
            self._receiver = None
        if self.channel is not None:
            await self.channel.close()
            self.channel = None


@asynccontextmanager
async def spawned_worker(
    entry: Callable[[WorkerSpec], None], name: str
) -> AsyncIterator[WorkerProcess]:
    worker = WorkerProcess(entry, name)
    try:
        await worker.start()
        yield worker
    finally:
        await worker.stop()


class FlakyLink:
    """A loopback TCP relay in front of a server whose link can go down for a while: while it is
    down, every relayed connection is reset and new ones are reset as soon as they arrive; while
    it is silent, connections stay open but carry nothing (a hang without an error)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.is_down = False
        self.is_silent = False
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._transports: set[asyncio.WriteTransport] = set()

    def url(self, server_url: str) -> str:
        return server_url.replace(f":{self.target_port}/", f":{self.port}/", 1)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def down(self) -> None:
        self.is_down = True
        for transport in list(self._transports):
            transport.abort()
        self._transports.clear()

    def up(self) -> None:
        self.is_down = False

    async def close(self) -> None:
        self.down()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.is_down:
            writer.transport.abort()
            return
        self._transports.add(writer.transport)
        task = asyncio.create_task(self._relay(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        if self.is_down:
            writer.transport.abort()
            up_writer.transport.abort()
            return
        self._transports.add(up_writer.transport)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    if self.is_silent:
                        continue
                    dst.write(data)
                    await dst.drain()

        pipes = [
            asyncio.create_task(pipe(reader, up_writer)),
            asyncio.create_task(pipe(up_reader, writer)),
        ]
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pipes:
                task.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)
            for transport in (writer.transport, up_writer.transport):
                transport.abort()
                self._transports.discard(transport)
