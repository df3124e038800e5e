"""The runner-API video job ``comfystream-video`` end to end: an uploaded clip processed to the
end and served back as MP4, and the same job over trickle channels running live."""

from __future__ import annotations

import asyncio
import base64
import io
import time
from typing import Any

import av
import numpy as np

from benchmarks.media.clip import ffmpeg_ts_segments, read_counter
from tests.byoc.harness import Env
from tests.e2e.conftest import INVERT, SPEC, LiveSource, OutputReader, expected_luma

CLIP_FRAMES = 45
AUDIO: str | None = "aac"


async def post_job(env: Env, body: dict[str, Any]) -> dict[str, Any]:
    async with env.http.post(f"{env.url}/process/request/comfystream-video", json=body) as response:
        answer = await response.json()
        assert response.status == 200, answer
    assert isinstance(answer, dict)
    return answer


async def status_of(env: Env, session_id: str) -> dict[str, Any]:
    async with env.http.get(f"{env.url}/byoc/session/{session_id}/status") as response:
        assert response.status == 200
        document = await response.json()
    assert isinstance(document, dict)
    return document


async def test_uploaded_clip_is_processed_to_an_inverted_mp4(env: Env) -> None:
    clip = b"".join(s.data for s in ffmpeg_ts_segments(SPEC, CLIP_FRAMES, audio_codec=AUDIO))
    answer = await post_job(
        env, {"input": {"workflow": INVERT, "media_data": base64.b64encode(clip).decode()}}
    )
    session_id = answer["session_id"]
    assert answer["status"] in ("starting", "ready", "processing")
    # The clip plays at its own frame rate like a live source, so a stage that falls behind on
    # a busy machine drops frames (counted in the stream's figures, which the runner API does
    # not report to the client: read them in-process).
    controller = env.runner.runtime.streams.get(session_id)
    assert controller is not None
    output_url = answer["result"]["output_url"]
    assert output_url == f"/byoc/session/{session_id}/output"

    deadline = time.monotonic() + 30
    while (status := await status_of(env, session_id))["status"] != "completed":
        assert status["status"] not in ("failed", "stopped"), status
        assert time.monotonic() < deadline, f"not completed: {status}"
        await asyncio.sleep(0.2)

    async with env.http.get(env.url + output_url) as response:
        assert response.status == 200
        mp4 = await response.read()
    with av.open(io.BytesIO(mp4), mode="r", format="mp4") as container:
        assert bool(container.streams.audio) == (AUDIO is not None)
        frames = [f.to_ndarray(format="gray") for f in container.decode(video=0)]
    counters = [read_counter(picture) for picture in frames]
    assert all(c is not None for c in counters)
    indices = [4095 - c for c in counters if c is not None]  # inverted: the complement
    assert indices == sorted(set(indices)) and set(indices) <= set(range(CLIP_FRAMES))
    dropped = controller.figures.frames_dropped
    assert len(frames) + dropped >= CLIP_FRAMES, (len(frames), dropped, indices)
    assert dropped <= CLIP_FRAMES // 5
    for index, picture in zip(indices, frames, strict=True):
        # gray is full-range luma: compare with the inverted source, scaled to full range.
        want = expected_luma(index, inverted=True).clip(16, 235)
        want_full = (want.astype(np.float64) - 16) * 255 / 219
        assert abs(float(picture.mean()) - float(want_full.mean())) < 12


async def test_the_job_over_trickle_channels_runs_live(env: Env) -> None:
    orch = env.orch
    assert orch is not None
    for name in ("vjob-in", "vjob-out"):
        orch.trickle.create_channel(name, "video/MP2T")
    base = f"{env.orch_url}/ai/trickle/"
    answer = await post_job(
        env,
        {
            "input": {"workflow": INVERT},
            "subscribe_url": base + "vjob-in",
            "publish_url": base + "vjob-out",
        },
    )
    session_id = answer["session_id"]
    reader = OutputReader(base + "vjob-out").start()
    source = LiveSource(base + "vjob-in", audio=False)
    source.start()
    try:
        await reader.wait_for(lambda r: len(r.counters()) >= 30, timeout=60)
    finally:
        await source.stop()
        await reader.close()
    counters = reader.counters()
    assert counters == sorted(set(counters))
    assert all(f.inverted for f in reader.frames)
    assert (await status_of(env, session_id))["status"] in ("ready", "processing")
    async with env.http.delete(f"{env.url}/byoc/session/{session_id}") as response:
        assert response.status == 200


async def test_a_clip_output_is_served_after_a_restart(tmp_path: Any) -> None:
    """With a state directory the processed MP4 and the session outlive the runner process."""
    from tests.e2e.conftest import live_runner

    clip = b"".join(s.data for s in ffmpeg_ts_segments(SPEC, 15, audio_codec=None))
    async with live_runner(state_dir=tmp_path) as env:
        answer = await post_job(
            env, {"input": {"workflow": INVERT, "media_data": base64.b64encode(clip).decode()}}
        )
        session_id = answer["session_id"]
        deadline = time.monotonic() + 60  # hang guard
        while (status := await status_of(env, session_id))["status"] != "completed":
            assert status["status"] not in ("failed", "stopped"), status
            assert time.monotonic() < deadline, f"not completed: {status}"
            await asyncio.sleep(0.2)
        async with env.http.get(f"{env.url}/byoc/session/{session_id}/output") as response:
            assert response.status == 200
            before = await response.read()

    async with live_runner(state_dir=tmp_path) as env:
        assert (await status_of(env, session_id)) == status
        async with env.http.get(f"{env.url}/byoc/session/{session_id}/output") as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "video/mp4"
            assert await response.read() == before
