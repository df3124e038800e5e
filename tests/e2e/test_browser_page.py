"""The page in real Chromium: it publishes Chromium's fake camera over WHIP to the runner (real
workers, built-in engine), plays the processed output over WHEP, shows figures, and stops with a
DELETE that ends the session."""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from PIL import Image

from byoc.sessions import SessionState
from tests.byoc.harness import Env, wait_until
from tests.e2e.browser import chromium_or_skip, chromium_page
from tests.e2e.conftest import live_runner

HANG_GUARD_MS = 90_000  # a loaded 2-core machine runs Chromium and three workers at once
TOKEN = "page-token"
WEBRTC = {"webrtc_host_addresses": ("127.0.0.1",), "webrtc_idle_timeout_s": 10.0}

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    chromium_or_skip()  # before starting the workers
    async with live_runner(**WEBRTC) as env:
        yield env


async def frames_received(page: Any) -> int:
    return int(await page.text_content("#frames-received") or 0)


async def picture_box(page: Any, selector: str) -> dict[str, float]:
    """Where a ``<video>`` element's picture is on the page (``object-fit: contain``)."""
    box = await page.locator(selector).bounding_box()
    size = await page.eval_on_selector(selector, "v => [v.videoWidth, v.videoHeight]")
    assert box is not None and size[0] > 0 and size[1] > 0
    scale = min(box["width"] / size[0], box["height"] / size[1])
    width, height = size[0] * scale, size[1] * scale
    return {
        "x": box["x"] + (box["width"] - width) / 2,
        "y": box["y"] + (box["height"] - height) / 2,
        "width": width,
        "height": height,
    }


def background_of(screenshot: Image.Image, box: dict[str, float]) -> np.ndarray:
    """A band near the bottom of a picture in a page screenshot, as float RGB: plain background
    in Chromium's fake camera (its moving shape and counters are higher up)."""
    x, y, w, h = box["x"], box["y"], box["width"], box["height"]
    crop = screenshot.crop(
        (int(x + 0.1 * w), int(y + 0.8 * h), int(x + 0.9 * w), int(y + 0.95 * h))
    )
    return np.asarray(crop.convert("RGB"), dtype=np.float64)


async def start_from_page(page: Any, *, source: str, workflow: str) -> str:
    """Pick the source and workflow on the loaded page, press Start, wait until it is live."""
    await page.wait_for_function(
        "document.querySelectorAll('#workflow-choice option').length > 1",
        timeout=HANG_GUARD_MS,
    )
    await page.select_option("#workflow-choice", workflow)
    if source == "camera":
        await page.select_option("#source", index=0)
    else:
        await page.select_option("#source", source)
    await page.click("#start")
    await page.wait_for_function(
        "window.byocPage.state === 'live'", timeout=HANG_GUARD_MS, polling=200
    )
    session_id = await page.evaluate("window.byocPage.sessionId")
    assert isinstance(session_id, str) and session_id
    return session_id


async def test_the_camera_is_published_and_played_back_inverted_then_stop_deletes(
    env: Env,
) -> None:
    async with chromium_page() as page:
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(env.url + "/")
        await page.wait_for_function(
            "document.querySelectorAll('#source option').length > 0", timeout=HANG_GUARD_MS
        )
        sources = await page.eval_on_selector_all("#source option", "os => os.map(o => o.value)")
        assert len(sources) >= 2 and sources[-1] == "canvas"  # the fake camera, then the canvas
        await page.fill("#width", "320")
        await page.fill("#height", "240")
        session_id = await start_from_page(page, source="camera", workflow="invert")

        # The page's own figures count decoded output frames.
        await page.wait_for_function(
            "Number(document.getElementById('frames-received').textContent) >= 30",
            timeout=HANG_GUARD_MS,
            polling=250,
        )
        box_in, box_out = await picture_box(page, "#input"), await picture_box(page, "#output")
        shot = Image.open(io.BytesIO(await page.screenshot()))
        if os.environ.get("BYOC_KEEP_SCREENSHOT"):
            shot.save(os.environ["BYOC_KEEP_SCREENSHOT"])
        source_px, output_px = background_of(shot, box_in), background_of(shot, box_out)
        # The output beside the camera is its negative, not the camera itself.
        assert np.abs(source_px + output_px - 255).mean() < 30, (
            source_px.mean(axis=(0, 1)),
            output_px.mean(axis=(0, 1)),
        )
        assert np.abs(source_px - output_px).mean() > 100
        assert float(await page.text_content("#fps-out") or 0) > 0
        assert await page.text_content("#session-status") == "processing"
        assert re.fullmatch(r"\d+ ms", await page.text_content("#runner-latency") or "")
        session = env.runner.runtime.sessions.get(session_id)
        assert session is not None and session.params.get("width") == 320

        # Stop: the page DELETEs its WHIP resource and the session ends.
        async with page.expect_response(
            lambda r: r.request.method == "DELETE" and f"/byoc/whip/{session_id}" in r.url,
            timeout=HANG_GUARD_MS,
        ) as deleted:
            await page.click("#stop")
        assert (await deleted.value).status == 200
        await wait_until(lambda: session.state is SessionState.COMPLETED, timeout=30)
        await page.wait_for_function(
            "document.getElementById('session-status').textContent === 'completed'",
            timeout=HANG_GUARD_MS,
        )
        assert await page.evaluate("window.byocPage.state") == "stopped"
        await wait_until(lambda: not env.runner.runtime.streams.controllers, timeout=30)
        assert not errors, errors


async def test_with_a_token_the_counter_source_measures_latency_and_apply_swaps_the_workflow() -> (
    None
):
    chromium_or_skip()
    async with live_runner(token=TOKEN, **WEBRTC) as env, chromium_page() as page:
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(env.url + "/")  # the page itself needs no token
        await page.fill("#width", "256")
        await page.fill("#height", "256")
        await page.wait_for_function(
            "document.querySelectorAll('#workflow-choice option').length > 1",
            timeout=HANG_GUARD_MS,
        )
        await page.select_option("#source", "canvas")
        await page.click("#start")  # no token typed: the runner refuses the WHIP offer
        await page.wait_for_function(
            "window.byocPage.state === 'failed'", timeout=HANG_GUARD_MS, polling=200
        )
        assert (await page.text_content("#error") or "").startswith("401")
        assert not env.runner.runtime.streams.controllers

        await page.fill("#token", TOKEN)
        session_id = await start_from_page(page, source="canvas", workflow="passthrough")

        # The page reads its frame counter back from the output: glass-to-glass latency.
        await page.wait_for_function(
            "window.byocPage.lastCounter !== null && window.byocPage.latencies.length >= 10",
            timeout=HANG_GUARD_MS,
            polling=250,
        )
        assert await page.evaluate("window.byocPage.lastCounter.inverted") is False
        await page.wait_for_function(
            "/^\\d+ ms \\/ \\d+ ms$/.test(document.getElementById('latency').textContent)",
            timeout=HANG_GUARD_MS,
            polling=250,
        )

        # Edit the workflow while live: the output comes back as a negative.
        await page.select_option("#workflow-choice", "invert")
        async with page.expect_response(
            lambda r: r.url.endswith(f"/byoc/session/{session_id}/params"),
            timeout=HANG_GUARD_MS,
        ) as applied:
            await page.click("#apply")
        assert (await applied.value).status == 200
        await page.wait_for_function(
            "window.byocPage.lastCounter && window.byocPage.lastCounter.inverted",
            timeout=HANG_GUARD_MS,
            polling=250,
        )
        session = env.runner.runtime.sessions.get(session_id)
        assert session is not None
        classes = {node["class_type"] for node in session.params["workflow"].values()}
        assert "ImageInvert" in classes

        async with page.expect_response(
            lambda r: r.request.method == "DELETE" and f"/byoc/whip/{session_id}" in r.url,
            timeout=HANG_GUARD_MS,
        ) as deleted:
            await page.click("#stop")
        assert (await deleted.value).status == 200
        await wait_until(lambda: session.state is SessionState.COMPLETED, timeout=30)
        assert not errors, errors


def long_invert(nodes: int) -> dict[str, Any]:
    """An odd chain of ``ImageInvert`` nodes: a negative, too long to travel in a URL."""
    assert nodes % 2 == 1
    workflow: dict[str, Any] = {"1": {"class_type": "LoadTensor", "inputs": {}}}
    for i in range(2, nodes + 2):
        workflow[str(i)] = {"class_type": "ImageInvert", "inputs": {"image": [str(i - 1), 0]}}
    workflow[str(nodes + 2)] = {
        "class_type": "SaveTensor",
        "inputs": {"images": [str(nodes + 1), 0]},
    }
    return workflow


async def test_a_workflow_too_long_for_a_url_goes_in_the_whip_ingest_json_body(
    env: Env,
) -> None:
    workflow = long_invert(75)
    assert len(quote(json.dumps(workflow))) > 6000
    async with chromium_page() as page:
        requests: list[tuple[str, str]] = []
        page.on("request", lambda r: requests.append((r.method, r.url)))
        await page.goto(env.url + "/")
        await page.fill("#width", "128")
        await page.fill("#height", "128")
        await page.wait_for_function(
            "document.querySelectorAll('#workflow-choice option').length > 1",
            timeout=HANG_GUARD_MS,
        )
        await page.select_option("#source", "canvas")
        await page.fill("#workflow", json.dumps(workflow))
        await page.click("#start")
        await page.wait_for_function(
            "window.byocPage.lastCounter && window.byocPage.lastCounter.inverted",
            timeout=HANG_GUARD_MS,
            polling=250,
        )
        session_id = await page.evaluate("window.byocPage.sessionId")
        posts = [url for method, url in requests if method == "POST"]
        assert f"{env.url}/process/request/whip-ingest" in posts
        assert not any("/whip?" in url for url in posts)
        session = env.runner.runtime.sessions.get(session_id)
        assert session is not None and len(session.params["workflow"]) == 77
        await page.click("#stop")
        await wait_until(lambda: session.state is SessionState.COMPLETED, timeout=30)
