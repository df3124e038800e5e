"""Interop with pytrickle 0.1.6, Livepeer's reference Python client, as a real peer.

pytrickle runs in its own environment (``.venv-pytrickle``, made by the Makefile) in a
subprocess driven by ``pytrickle_peer.py``; our server, publisher and subscriber run here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

import pytest

from byoc.livepeer.standin.trickle_server import TrickleServer
from byoc.livepeer.tls import generate_self_signed, server_ssl_context
from byoc.livepeer.trickle import (
    TricklePublisher,
    TrickleSubscriber,
    read_json_segments,
)
from tests.byoc.livepeer.conftest import ServerFactory, wait_until
from tests.byoc.livepeer.trickle.pytrickle_peer import json_document, segment_chunks

REPO = Path(__file__).resolve().parents[4]
PEER_PYTHON = REPO / ".venv-pytrickle" / "bin" / "python"
PEER_SCRIPT = Path(__file__).with_name("pytrickle_peer.py")
PEER_TIMEOUT_S = 90


def peer_python() -> Path:
    if not PEER_PYTHON.exists():
        pytest.fail(
            f"pytrickle environment missing at {PEER_PYTHON}: create it with "
            "`make .venv-pytrickle/.installed` (python3 -m venv .venv-pytrickle && "
            ".venv-pytrickle/bin/pip install --only-binary av -r requirements/pytrickle.txt)"
        )
    return PEER_PYTHON


class Peer:
    """A running pytrickle subprocess and the JSON lines it reported."""

    def __init__(self, proc: asyncio.subprocess.Process, stderr: IO[bytes]) -> None:
        self.proc = proc
        self.stderr = stderr
        self.reports: list[dict] = []

    async def next_report(self) -> dict:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), PEER_TIMEOUT_S)
        if not line:
            await self.proc.wait()
            self.stderr.seek(0)
            stderr = self.stderr.read().decode(errors="replace")
            raise AssertionError(f"pytrickle peer exited early:\n{stderr[-3000:]}")
        report = json.loads(line)
        self.reports.append(report)
        return report

    async def reports_until_done(self) -> list[dict]:
        while not (self.reports and self.reports[-1].get("done")):
            await self.next_report()
        assert await asyncio.wait_for(self.proc.wait(), PEER_TIMEOUT_S) == 0
        return [r for r in self.reports if "seq" in r or "eos" in r]


@contextlib.asynccontextmanager
async def pytrickle(*args: str) -> AsyncIterator[Peer]:
    with tempfile.TemporaryFile() as stderr:  # a file: a chatty peer can never block on it
        proc = await asyncio.create_subprocess_exec(
            str(peer_python()),
            str(PEER_SCRIPT),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
        try:
            yield Peer(proc, stderr)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


def digest(data: bytes) -> dict:
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


async def test_pytrickle_publisher_to_our_subscriber(server: TrickleServer):
    server.create_channel("in", "video/MP2T")
    url = server.channel_url("in")
    count = 8
    async with TrickleSubscriber(url, start_seq=-1) as sub:
        received: list[tuple[int, bytes]] = []

        async def read() -> None:
            async for segment in sub:
                received.append((segment.seq, await segment.read_all()))
                if len(received) == count:
                    return

        reader = asyncio.create_task(read())
        async with pytrickle("publish", url, str(count), "--pace", "0.002") as peer:
            reports = await peer.reports_until_done()
        await asyncio.wait_for(reader, PEER_TIMEOUT_S)
    expected = [b"".join(segment_chunks(i)) for i in range(count)]
    assert [seq for seq, _ in received] == list(range(count))
    assert [body for _, body in received] == expected  # byte for byte
    assert [{k: r[k] for k in ("size", "sha256")} for r in reports] == [digest(b) for b in expected]
    assert server.channel("in").content_type == "video/MP2T"


async def test_our_publisher_to_pytrickle_subscriber(server: TrickleServer):
    server.create_channel("out", "video/MP2T")
    url = server.channel_url("out")
    count = 8
    async with pytrickle("subscribe", url, "-1", "--start-seq", "-1") as peer:
        # pytrickle is parked on seq 0 before we publish: a live relay, not a replay
        await wait_until(
            lambda: (s := server.channel("out").segment(0)) is not None and s.readers_waiting,
            timeout=PEER_TIMEOUT_S,
        )
        async with TricklePublisher(url, "video/mp2t") as pub:
            for i in range(count):
                async with pub.segment() as seg:
                    for chunk in segment_chunks(i):
                        await seg.write(chunk)
                        await asyncio.sleep(0.002)
                assert await seg.wait()
            while len([r for r in peer.reports if "seq" in r]) < count:
                await peer.next_report()
        # closing our publisher deleted the channel: pytrickle sees the end of the stream
        reports = await peer.reports_until_done()
    expected = [b"".join(segment_chunks(i)) for i in range(count)]
    assert [r["seq"] for r in reports if "seq" in r] == list(range(count))
    assert [{k: r[k] for k in ("size", "sha256")} for r in reports if "seq" in r] == [
        digest(b) for b in expected
    ]
    assert reports[-1] == {"eos": True}


async def test_pytrickle_control_message_over_32k_reaches_us_whole(server: TrickleServer):
    server.create_channel("ctl", "application/json")
    url = server.channel_url("ctl")
    async with TrickleSubscriber(url, start_seq=-1) as sub:
        docs = read_json_segments(sub)
        first = asyncio.create_task(anext(docs))
        async with pytrickle("publish", url, "2", "--json", "120000") as peer:
            await peer.reports_until_done()
        got = [await first, await anext(docs)]
        await docs.aclose()
    assert got == [json.loads(json_document(120000))] * 2


async def test_https_both_ways_with_verification_off(make_server: ServerFactory):
    server = await make_server(ssl=server_ssl_context(generate_self_signed()))
    assert server.base_url.startswith("https://")
    server.create_channel("a", "video/MP2T")
    server.create_channel("b", "video/MP2T")
    # pytrickle -> us
    async with TrickleSubscriber(server.channel_url("a"), start_seq=0, verify_tls=False) as sub:
        async with pytrickle("publish", server.channel_url("a"), "3") as peer:
            await peer.reports_until_done()
        got = []
        async for segment in sub:
            got.append(await segment.read_all())
            if len(got) == 3:
                break
    assert got == [b"".join(segment_chunks(i)) for i in range(3)]
    # us -> pytrickle
    async with TricklePublisher(server.channel_url("b"), "video/mp2t", verify_tls=False) as pub:
        for i in range(3):
            async with pub.segment() as seg:
                for chunk in segment_chunks(i):
                    await seg.write(chunk)
            assert await seg.wait()
        async with pytrickle("subscribe", server.channel_url("b"), "3", "--start-seq", "0") as peer:
            reports = await peer.reports_until_done()
    assert [{k: r[k] for k in ("size", "sha256")} for r in reports] == [
        digest(b"".join(segment_chunks(i))) for i in range(3)
    ]
