"""How live streams join, change and end with media flowing (cases S6 late join, S9, S10, S12
of the BYOC conformance list): late join at the live edge, stop mid-stream, the input channel
deleted under the runner, a live workflow swap, two concurrent streams and capacity."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from benchmarks.media.clip import ClipSpec
from byoc.sessions import SessionState
from tests.byoc.harness import Env, wait_until
from tests.byoc.stream_helpers import stop_via_orch, update_via_orch
from tests.e2e.conftest import (
    INVERT,
    PASSTHROUGH,
    SPEC,
    LiveSource,
    OutputReader,
    StreamUrls,
    live_runner,
    start_stream,
)


@pytest.fixture
async def single() -> AsyncIterator[Env]:
    """A runner with room for one stream."""
    async with live_runner(capacity=1) as env:
        yield env


def state_of(env: Env, stream_id: str) -> SessionState | None:
    session = env.runner.runtime.sessions.get(stream_id)
    return session.state if session is not None else None


def rings_of(stream_id: str) -> list[str]:
    """The runner's shared-memory rings of ``stream_id`` (the runner runs in this process)."""
    prefix = f"cbyoc-{os.getpid()}-{stream_id}"
    return [name for name in os.listdir("/dev/shm") if name.startswith(prefix)]


async def flowing(
    env: Env, stream_id: str, params: dict[str, Any] | None = None, spec: ClipSpec = SPEC
) -> tuple[StreamUrls, LiveSource, OutputReader]:
    """Start a stream, publish the clip live and wait for processed output."""
    urls = await start_stream(env, stream_id, params)
    assert urls is not None
    reader = OutputReader(urls.subscribe, spec=spec).start()
    source = LiveSource(urls.publish, audio=False, spec=spec)
    source.start()
    try:
        await reader.wait_for(lambda r: len(r.counters()) >= 10, timeout=60)
    except BaseException:
        await source.stop()
        await reader.close()
        raise
    return urls, source, reader


async def test_late_join_gets_output_from_the_live_edge(env: Env) -> None:
    orch = env.orch
    assert orch is not None
    for suffix, kind in (("", "video/MP2T"), ("-out", "video/MP2T")):
        orch.trickle.create_channel(f"late{suffix}", kind)
    for suffix in ("-control", "-events"):
        orch.trickle.create_channel(f"late{suffix}", "application/json")
    base = f"{env.orch_url}/ai/trickle/late"
    source = LiveSource(base)
    source.start()
    reader = OutputReader(base + "-out").start()
    try:
        # The source is well past seq 0 (0.5 s segments) before the stream starts.
        await wait_until(lambda: source.log.segments >= 4, timeout=60)
        body = {
            "gateway_request_id": "late",
            "subscribe_url": base,
            "publish_url": base + "-out",
            "control_url": base + "-control",
            "events_url": base + "-events",
            "params": {"workflow": INVERT},
        }
        async with env.http.post(
            env.url + "/stream/start", json=body, headers={"X-Stream-Id": "late"}
        ) as r:
            assert r.status == 200, await r.text()
        joined_at = source.next_index
        await reader.wait_for(lambda r: len(r.counters()) >= 15, timeout=60)
    finally:
        await source.stop()
        await reader.close()
    counters = reader.counters()
    assert all(f.inverted for f in reader.frames)
    # Output starts near where the source was when the stream joined, not at frame 0.
    assert counters[0] >= joined_at - 20, (counters[0], joined_at)


async def test_stop_mid_stream_ends_the_session_unlinks_rings_and_frees_the_slot(
    single: Env,
) -> None:
    env = single
    _, source, reader = await flowing(env, "mid", {"workflow": INVERT})
    try:
        assert rings_of("mid")
        async with await stop_via_orch(env, "mid", b"stream ended") as r:
            assert r.status < 400
        await wait_until(lambda: state_of(env, "mid") is SessionState.STOPPED, timeout=60)
        await wait_until(lambda: not rings_of("mid"), timeout=60)
        await reader.wait_for(lambda r: r.ended, timeout=60)  # output channel closed
    finally:
        await source.stop()
        await reader.close()
    # The only slot is free at once: a new stream starts and gets processed output.
    _, source, reader = await flowing(env, "next", {"workflow": INVERT})
    await source.stop()
    await reader.close()
    assert all(f.inverted for f in reader.frames)


async def test_input_channel_deleted_without_stop_ends_the_session(single: Env) -> None:
    env = single
    urls, source, reader = await flowing(env, "gone", {"workflow": INVERT})
    try:
        await source.stop()
        async with env.http.delete(urls.publish) as r:
            assert r.status < 400
        await wait_until(lambda: not state_of(env, "gone").live, timeout=60)  # type: ignore[union-attr]
        await wait_until(lambda: not rings_of("gone"), timeout=60)
    finally:
        await reader.close()
    assert (await start_stream(env, "after", {"workflow": INVERT})) is not None


async def test_live_workflow_swap_switches_the_output(env: Env) -> None:
    _urls, source, reader = await flowing(env, "swap", {"workflow": INVERT})
    try:
        assert all(f.inverted for f in reader.frames)
        async with await update_via_orch(
            env, "swap", json.dumps({"workflow": PASSTHROUGH}).encode()
        ) as r:
            assert r.status < 400, await r.text()
        swapped_at = len(reader.frames)
        await reader.wait_for(
            lambda r: sum(f.inverted is False for f in r.frames[swapped_at:]) >= 15, timeout=15
        )
    finally:
        await source.stop()
        await reader.close()
    kinds = [f.inverted for f in reader.frames]
    # One switch: inverted until the update took effect, plain after it, never back.
    first_plain = kinds.index(False)
    assert all(kinds[:first_plain]) and not any(kinds[first_plain:])
    assert first_plain >= 10


async def test_two_concurrent_streams_with_their_own_workflow_and_size(env: Env) -> None:
    a = await flowing(env, "pair-a", {"workflow": INVERT})
    try:
        # 384 -> 192 keeps the counter blocks readable (exactly half their size).
        b = await flowing(
            env,
            "pair-b",
            {"workflow": PASSTHROUGH, "width": 192, "height": 192},
            ClipSpec(width=384, height=384, audio_channels=1),
        )
    except BaseException:
        await a[1].stop()
        await a[2].close()
        raise
    try:
        await a[2].wait_for(lambda r: len(r.frames) >= 30, timeout=60)
        await b[2].wait_for(lambda r: len(r.frames) >= 30, timeout=60)
    finally:
        for _, source, reader in (a, b):
            await source.stop()
            await reader.close()
    frames_a, frames_b = a[2].frames, b[2].frames
    assert {(f.width, f.height) for f in frames_a} == {(256, 256)}
    assert all(f.inverted for f in frames_a)
    assert {(f.width, f.height) for f in frames_b} == {(192, 192)}
    assert all(f.inverted is False for f in frames_b)
    for reader in (a[2], b[2]):
        counters = reader.counters()
        assert len(counters) == len(reader.frames)
        assert counters == sorted(set(counters))


async def test_capacity_plus_one_is_503_and_the_first_stream_is_unaffected(single: Env) -> None:
    env = single
    _urls, source, reader = await flowing(env, "full", {"workflow": INVERT})
    try:
        await start_stream(env, "extra", {"workflow": INVERT}, expect=503)
        before = len(reader.counters())
        await reader.wait_for(lambda r: len(r.counters()) >= before + 15, timeout=60)
    finally:
        await source.stop()
        await reader.close()
    assert state_of(env, "extra") is None
    assert state_of(env, "full") is not None and state_of(env, "full").live  # type: ignore[union-attr]
