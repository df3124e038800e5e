"""``comfystream-image`` end to end with the real infer worker (built-in engine): through the
local orchestrator, as JSON, as PNG and as Server-Sent Events with a progress event per node."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from infer.worker import main as infer_main
from tests.byoc.harness import Env, running, wait_until
from tests.byoc.routes.test_image_job import events_of, read_sse

WORKFLOW = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "input.png"}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "out"}},
}


def png(width: int = 16, height: int = 8) -> tuple[bytes, np.ndarray]:
    pixels = (
        (np.arange(width * height * 3, dtype=np.uint32) % 251)
        .astype(np.uint8)
        .reshape(height, width, 3)
    )
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue(), pixels


@pytest.fixture
async def env() -> Env:  # type: ignore[misc]
    async with running(workers={"infer": infer_main}, engine="builtin", job_timeout_s=60) as env:
        await wait_until(lambda: env.runner.supervisor.is_ready("infer"), timeout=90)
        yield env


async def test_invert_through_the_orchestrator_as_json_png_and_sse(env: Env) -> None:
    data, pixels = png()
    body = {"image": base64.b64encode(data).decode(), "workflow": WORKFLOW}
    async with await env.job("comfystream-image", body, timeout=60) as r:
        assert r.status == 200, await r.text()
        result = await r.json()
    assert (result["width"], result["height"]) == (16, 8)
    out = np.asarray(Image.open(io.BytesIO(base64.b64decode(result["image"]))).convert("RGB"))
    assert np.abs(out.astype(int) - (255 - pixels.astype(int))).max() <= 1

    async with await env.job("comfystream-image", {**body, "accept": "image/png"}, timeout=60) as r:
        assert r.status == 200 and r.content_type == "image/png"
        out = np.asarray(Image.open(io.BytesIO(await r.read())).convert("RGB"))
    assert np.abs(out.astype(int) - (255 - pixels.astype(int))).max() <= 1

    async with await env.job(
        "comfystream-image", {**body, "accept": "text/event-stream"}, timeout=60
    ) as r:
        assert r.status == 200
        events = events_of(await read_sse(r))
    progress = [json.loads(d) for name, d in events if name == "progress"]
    assert [p["node"] for p in progress] == ["1", "2", "3"]  # one per executed node
    assert progress[1]["class_type"] == "ImageInvert"
    assert [name for name, _ in events][-3:] == ["result", "message", "message"]
    assert events[-1][1] == "[DONE]"


async def test_invalid_workflow_is_400_from_the_worker(env: Env) -> None:
    data, _ = png()
    bad = {"1": {"class_type": "NoSuchNode", "inputs": {}}}
    async with env.http.post(
        env.url + "/comfystream-image",
        json={"image": base64.b64encode(data).decode(), "workflow": bad},
    ) as r:
        assert r.status == 400
        assert "NoSuchNode" in (await r.json())["error"]
