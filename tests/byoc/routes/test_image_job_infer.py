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


def empty_image_workflow(width: int, height: int, batch: int) -> dict[str, object]:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": "input.png"}},
        "2": {
            "class_type": "EmptyImage",
            "inputs": {"width": width, "height": height, "batch_size": batch, "color": 0},
        },
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "o"}},
    }


@pytest.mark.parametrize(
    ("size", "needle"),
    [((16384, 16384, 4096), "--max-image-side 4096"), ((4096, 4096, 64), "--max-workflow-memory")],
)
async def test_a_workflow_too_large_to_allocate_is_400_naming_the_limit(
    env: Env, size: tuple[int, int, int], needle: str
) -> None:
    """This answered 500 (DefaultCPUAllocator) before the sizes were checked."""
    data, _ = png()
    body = {"image": base64.b64encode(data).decode(), "workflow": empty_image_workflow(*size)}
    async with env.http.post(env.url + "/process/request/comfystream-image", json=body) as r:
        assert r.status == 400, await r.text()
        assert needle in (await r.json())["error"]
    assert env.runner.supervisor.workers["infer"].restarts == 0


async def test_an_allocation_that_fails_anyway_is_503_and_the_worker_lives() -> None:
    # A budget far above the machine: the check lets it through, the allocator refuses it.
    async with running(
        workers={"infer": infer_main},
        engine="builtin",
        job_timeout_s=60,
        max_workflow_memory_mb=10**9,
    ) as env:
        await wait_until(lambda: env.runner.supervisor.is_ready("infer"), timeout=90)
        data, _ = png()
        image = base64.b64encode(data).decode()
        body = {"image": image, "workflow": empty_image_workflow(4096, 4096, 4096)}
        async with env.http.post(env.url + "/comfystream-image", json=body) as r:
            assert r.status == 503, await r.text()
            assert "not enough memory" in (await r.json())["error"]
        async with env.http.post(
            env.url + "/comfystream-image", json={"image": image, "workflow": WORKFLOW}
        ) as r:
            assert r.status == 200
        assert env.runner.supervisor.workers["infer"].restarts == 0


async def test_errors_about_a_huge_workflow_stay_small(env: Env) -> None:
    """10,000 unknown nodes used to be listed in full (a 228 KB answer)."""
    data, _ = png()
    huge = {str(i): {"class_type": f"Unknown{i}", "inputs": {}} for i in range(10_000)}
    async with env.http.post(
        env.url + "/comfystream-image",
        json={"image": base64.b64encode(data).decode(), "workflow": huge},
    ) as r:
        raw = await r.read()
        assert r.status == 400
    assert len(raw) < 8192, len(raw)
    assert "and 9990 more" in json.loads(raw)["error"]
