"""Trickle relay figures: latency through our server, fan-out throughput, server memory.

Every party is its own process on loopback, as in production (the server is the orchestrator,
the publisher and subscribers are workers or gateways):

* **latency**: a publisher writes small records (1316 bytes, seven TS packets) every 2 ms, each
  starting with its ``time.monotonic_ns()`` at write time, in 1 s segments; a subscriber stamps
  each record when its bytes arrive. Baseline, in the same run: the same records through a plain
  asyncio TCP relay process (one extra hop, no HTTP), so the ratio is trickle's own cost.
* **throughput**: one publisher writes 2 MiB segments in 64 KiB chunks as fast as it can while
  1, then 8, subscribers follow the channel; MB/s published and delivered, segments/s.
* **memory**: RSS of a fresh server process before and after 100 channels with 3 segments of
  64 KiB each (what the rings hold), against the payload it holds.

``run(quick) -> dict``; ``python -m benchmarks.trickle`` prints and saves the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import struct
import time
from multiprocessing.connection import Connection
from typing import Any

import aiohttp
import numpy as np

from byoc.livepeer.standin.trickle_server import TrickleServer
from byoc.livepeer.trickle import TricklePublisher, TrickleSubscriber

RECORD_BYTES = 1316
RECORD_INTERVAL_S = 0.002
SEGMENT_SECONDS = 1.0
WARMUP_RECORDS = 50
_STAMP = struct.Struct("<Q")
_MP = multiprocessing.get_context("spawn")


# ---- helpers ------------------------------------------------------------------------------------


def _event_loop_name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def _run(coro: Any) -> Any:
    """asyncio.run on uvloop when it is installed (what the runner uses)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _rss_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _percentiles(values_ms: list[float]) -> dict[str, float]:
    if not values_ms:
        return {"n": 0}
    arr = np.asarray(values_ms)
    return {
        "n": len(values_ms),
        "p50": round(float(np.percentile(arr, 50)), 3),
        "p90": round(float(np.percentile(arr, 90)), 3),
        "p99": round(float(np.percentile(arr, 99)), 3),
        "max": round(float(arr.max()), 3),
    }


class _Records:
    """Reassembles fixed-size stamped records from a byte stream; collects their latencies."""

    def __init__(self) -> None:
        self.pending = bytearray()
        self.latencies_ms: list[float] = []
        self.count = 0

    def feed(self, data: bytes, arrived_ns: int) -> None:
        self.pending += data
        whole = len(self.pending) - len(self.pending) % RECORD_BYTES
        for offset in range(0, whole, RECORD_BYTES):
            (sent_ns,) = _STAMP.unpack_from(self.pending, offset)
            self.count += 1
            if self.count > WARMUP_RECORDS:
                self.latencies_ms.append((arrived_ns - sent_ns) / 1e6)
        del self.pending[:whole]


def _record(padding: bytes) -> bytes:
    return _STAMP.pack(time.monotonic_ns()) + padding


async def _paced(count: int) -> Any:
    """Yields ``count`` times, every RECORD_INTERVAL_S on an absolute schedule."""
    loop = asyncio.get_running_loop()
    due = loop.time()
    for i in range(count):
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        yield i
        due += RECORD_INTERVAL_S


# ---- server process ------------------------------------------------------------------------------


def _server_process(conn: Connection) -> None:
    _run(_serve(conn))


async def _serve(conn: Connection) -> None:
    """A TrickleServer answering commands from the benchmark over a pipe."""
    server = TrickleServer(max_segment_bytes=256 * 1024 * 1024)
    base_url = await server.start("127.0.0.1", 0)
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    def on_command() -> None:
        try:
            command, *args = conn.recv()
        except EOFError:
            done.set()
            return
        if command == "create":
            for name in args[0]:
                server.create_channel(name, args[1])
            conn.send(True)
        elif command == "rss":
            conn.send(_rss_bytes())
        elif command == "held":
            conn.send(sum(ch.buffered_bytes for ch in map(server.channel, args[0]) if ch))
        elif command == "stop":
            done.set()

    loop.add_reader(conn.fileno(), on_command)
    conn.send(base_url)
    await done.wait()
    loop.remove_reader(conn.fileno())
    await server.close()
    conn.send("stopped")


class _ServerProcess:
    def __init__(self) -> None:
        self.conn, child = _MP.Pipe()
        self.proc = _MP.Process(target=_server_process, args=(child,), daemon=True)
        self.proc.start()
        child.close()
        self.base_url: str = self.conn.recv()

    def call(self, *command: Any) -> Any:
        self.conn.send(command)
        return self.conn.recv()

    def stop(self) -> None:
        with contextlib.suppress(OSError, EOFError):
            self.conn.send(("stop",))
            self.conn.recv()
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


# ---- latency ------------------------------------------------------------------------------------


def _tcp_relay_process(conn: Connection) -> None:
    _run(_tcp_relay(conn))


async def _tcp_relay(conn: Connection) -> None:
    """Forwards the publisher's bytes (first byte ``P``) to the subscriber (first byte ``S``)."""
    subscriber: asyncio.Future[asyncio.StreamWriter] = asyncio.get_running_loop().create_future()
    finished = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        role = await reader.readexactly(1)
        if role == b"S":
            subscriber.set_result(writer)
            await finished.wait()
            writer.close()
            return
        out = await subscriber
        while data := await reader.read(65536):
            out.write(data)
            await out.drain()
        finished.set()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    conn.send(server.sockets[0].getsockname()[1])
    await finished.wait()
    server.close()


def _latency_publisher_process(target: str | int, count: int) -> None:
    _run(_latency_publish(target, count))


async def _latency_publish(target: str | int, count: int) -> None:
    padding = bytes(RECORD_BYTES - _STAMP.size)
    per_segment = int(SEGMENT_SECONDS / RECORD_INTERVAL_S)
    if isinstance(target, int):  # baseline: plain TCP relay on this port
        _reader, writer = await asyncio.open_connection("127.0.0.1", target)
        writer.write(b"P")
        async for _ in _paced(count):
            writer.write(_record(padding))
            await writer.drain()
        writer.close()
        await writer.wait_closed()
        return
    async with TricklePublisher(target, "video/mp2t") as pub:
        seg = await pub.next_segment()
        async for i in _paced(count):
            if i and i % per_segment == 0:
                await seg.close()
                seg = await pub.next_segment()
            await seg.write(_record(padding))
        await seg.close()
        await seg.wait()


async def _latency_subscribe_trickle(url: str, count: int, records: _Records) -> None:
    async with TrickleSubscriber(url, start_seq=-1) as sub:
        async for segment in sub:
            async for chunk in segment.chunks():
                records.feed(chunk, time.monotonic_ns())
            if records.count >= count:
                return


async def _latency_subscribe_tcp(port: int, count: int, records: _Records) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"S")
    await writer.drain()
    while records.count < count and (data := await reader.read(65536)):
        records.feed(data, time.monotonic_ns())
    writer.close()


def measure_latency(seconds: float) -> dict[str, Any]:
    count = int(seconds / RECORD_INTERVAL_S)

    # trickle: publisher process -> server process -> this process
    server = _ServerProcess()
    try:
        server.call("create", ["lat"], "video/MP2T")
        url = server.base_url + "lat"
        trickle = _Records()

        async def trickle_run() -> None:
            reading = asyncio.create_task(_latency_subscribe_trickle(url, count, trickle))
            await asyncio.sleep(0.2)  # parked on the next segment
            pub = _MP.Process(target=_latency_publisher_process, args=(url, count))
            pub.start()
            await asyncio.wait_for(reading, seconds + 30)
            await asyncio.get_running_loop().run_in_executor(None, pub.join)

        _run(trickle_run())
    finally:
        server.stop()

    # baseline: publisher process -> plain TCP relay process -> this process
    conn, child = _MP.Pipe()
    relay = _MP.Process(target=_tcp_relay_process, args=(child,), daemon=True)
    relay.start()
    port = conn.recv()
    baseline = _Records()

    async def tcp_run() -> None:
        reading = asyncio.create_task(_latency_subscribe_tcp(port, count, baseline))
        await asyncio.sleep(0.2)
        pub = _MP.Process(target=_latency_publisher_process, args=(port, count))
        pub.start()
        await asyncio.wait_for(reading, seconds + 30)
        await asyncio.get_running_loop().run_in_executor(None, pub.join)

    try:
        _run(tcp_run())
    finally:
        relay.join(10)
        if relay.is_alive():
            relay.kill()
            relay.join()
        conn.close()

    ours = _percentiles(trickle.latencies_ms)
    base = _percentiles(baseline.latencies_ms)
    result: dict[str, Any] = {
        "what": "chunk written by the publisher -> same bytes read by a subscriber",
        "records": f"{RECORD_BYTES} B every {RECORD_INTERVAL_S * 1000:g} ms, {SEGMENT_SECONDS:g} s segments",
        "trickle_ms": ours,
        "tcp_relay_baseline_ms": base,
    }
    if ours.get("p50") and base.get("p50"):
        result["p50_ratio_vs_baseline"] = round(ours["p50"] / base["p50"], 2)
        result["p99_ratio_vs_baseline"] = round(ours["p99"] / base["p99"], 2)
    return result


# ---- throughput ---------------------------------------------------------------------------------


def _throughput_publisher_process(url: str, seconds: float, out: Connection) -> None:
    out.send(_run(_throughput_publish(url, seconds)))


async def _throughput_publish(url: str, seconds: float) -> dict[str, float]:
    chunk = os.urandom(64 * 1024)
    chunks_per_segment = 32  # 2 MiB segments
    segments = 0
    began = time.monotonic()
    async with TricklePublisher(url, "video/mp2t") as pub:
        while time.monotonic() - began < seconds:
            async with pub.segment() as seg:
                for _ in range(chunks_per_segment):
                    await seg.write(chunk)
            segments += 1
        await seg.wait()
        elapsed = time.monotonic() - began
    return {
        "segments": segments,
        "bytes": segments * chunks_per_segment * len(chunk),
        "seconds": elapsed,
    }


def _throughput_subscribers_process(url: str, n: int, ready: Connection) -> None:
    ready.send(_run(_throughput_subscribe(url, n, ready)))


async def _throughput_subscribe(url: str, n: int, ready: Connection) -> list[dict[str, Any]]:
    async def one() -> dict[str, Any]:
        got = 0
        segments = 0
        first: float | None = None
        async with TrickleSubscriber(url, start_seq=-1) as sub:
            async for segment in sub:
                async for data in segment.chunks():
                    if first is None:
                        first = time.monotonic()
                    got += len(data)
                segments += 1
            jumps = sub.jumps
        return {
            "bytes": got,
            "segments": segments,
            "jumps": jumps,
            "seconds": time.monotonic() - (first or time.monotonic()),
        }

    tasks = [asyncio.create_task(one()) for _ in range(n)]
    await asyncio.sleep(0.2)
    ready.send("ready")
    return list(await asyncio.gather(*tasks))


def measure_throughput(subscribers: int, seconds: float) -> dict[str, Any]:
    server = _ServerProcess()
    try:
        server.call("create", ["tp"], "video/MP2T")
        url = server.base_url + "tp"
        sub_conn, sub_child = _MP.Pipe()
        subs = _MP.Process(
            target=_throughput_subscribers_process, args=(url, subscribers, sub_child)
        )
        subs.start()
        assert sub_conn.recv() == "ready"
        pub_conn, pub_child = _MP.Pipe()
        pub = _MP.Process(target=_throughput_publisher_process, args=(url, seconds, pub_child))
        pub.start()
        published = pub_conn.recv()
        readers = sub_conn.recv()  # the publisher's close deleted the channel: readers end
        pub.join()
        subs.join()
        sub_conn.close()
        pub_conn.close()
    finally:
        server.stop()
    delivered = sum(r["bytes"] for r in readers)
    mb = 1024 * 1024
    return {
        "subscribers": subscribers,
        "segment_bytes": 2 * mb,
        "published_mb_per_s": round(published["bytes"] / published["seconds"] / mb, 1),
        "published_segments_per_s": round(published["segments"] / published["seconds"], 1),
        "delivered_mb_per_s_total": round(delivered / published["seconds"] / mb, 1),
        "delivered_share_per_subscriber": [
            round(r["bytes"] / published["bytes"], 3) for r in readers
        ],
        "subscriber_jumps": [r["jumps"] for r in readers],
    }


# ---- memory -------------------------------------------------------------------------------------


def measure_memory(channels: int = 100, segments: int = 3, segment_bytes: int = 64 * 1024) -> dict:
    server = _ServerProcess()
    try:
        names = [f"mem{i}" for i in range(channels)]
        rss_start = server.call("rss")
        server.call("create", names, "video/MP2T")
        rss_channels = server.call("rss")
        payload = os.urandom(segment_bytes)

        async def fill() -> None:
            async with aiohttp.ClientSession() as session:
                limit = asyncio.Semaphore(10)

                async def one(name: str) -> None:
                    async with limit:
                        pub = TricklePublisher(
                            server.base_url + name,
                            "video/mp2t",
                            session=session,
                            delete_on_close=False,
                        )
                        for _ in range(segments):
                            async with pub.segment() as seg:
                                for i in range(0, segment_bytes, 16 * 1024):
                                    await seg.write(payload[i : i + 16 * 1024])
                            await seg.wait()
                        await pub.close()

                await asyncio.gather(*(one(n) for n in names))

        _run(fill())
        time.sleep(0.2)
        rss_filled = server.call("rss")
        held = server.call("held", names)
    finally:
        server.stop()
    mb = 1024 * 1024
    delta = rss_filled - rss_start
    return {
        "channels": channels,
        "segments_per_channel": segments,
        "segment_bytes": segment_bytes,
        "payload_held_mb": round(held / mb, 2),
        "rss_start_mb": round(rss_start / mb, 1),
        "rss_delta_empty_channels_kb": round((rss_channels - rss_start) / 1024, 1),
        "rss_delta_mb": round(delta / mb, 2),
        "rss_delta_over_payload": round(delta / held, 3) if held else None,
        "overhead_per_channel_kb": round((delta - held) / channels / 1024, 1),
    }


# ---- entry --------------------------------------------------------------------------------------


def run(quick: bool = False) -> dict[str, Any]:
    """All relay figures (latencies in ms)."""
    began = time.monotonic()
    result: dict[str, Any] = {
        "benchmark": "trickle.relay",
        "quick": quick,
        "event_loop": _event_loop_name(),
        "cpus": os.cpu_count(),
    }
    result["latency"] = measure_latency(1.0 if quick else 20.0)
    result["throughput"] = [measure_throughput(n, 0.6 if quick else 6.0) for n in (1, 8)]
    result["memory"] = measure_memory()
    result["seconds"] = round(time.monotonic() - began, 1)
    return result
