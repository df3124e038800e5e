"""Real Chromium for the page's tests: Debian's ``chromium`` driven by Playwright (the Python
package and its bundled driver; no browser download). Without either, the tests skip, or fail
when ``CI`` is set (a CI machine must run them)."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest

CHROMIUM_FLAGS = [
    "--allow-loopback-in-peer-connection",  # else the offer has no candidate on loopback
    "--use-fake-ui-for-media-stream",  # grant the camera; also needed for loopback candidates
    "--use-fake-device-for-media-stream=fps=30",  # Chromium's own test camera at 30 fps
    "--autoplay-policy=no-user-gesture-required",
    "--disable-dev-shm-usage",  # its shared memory in /tmp, apart from our rings
    "--disable-gpu",
]


def chromium_or_skip() -> str:
    """The Chromium executable; skip (or fail under ``CI``) when it or Playwright is missing."""
    problems = []
    path = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if path is None or not os.access(path, os.X_OK):
        problems.append(f"no chromium executable at {path} (apt-get install chromium)")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        problems.append("the playwright package is not installed")
    if problems:
        reason = "; ".join(problems)
        if os.environ.get("CI"):
            pytest.fail(f"browser test cannot run under CI: {reason}")
        pytest.skip(reason)
    assert path is not None
    return path


@contextlib.asynccontextmanager
async def chromium_page(**context_options: Any) -> AsyncIterator[Any]:
    """A fresh headless Chromium page; the browser is closed on the way out."""
    executable = chromium_or_skip()
    from playwright.async_api import async_playwright

    args = list(CHROMIUM_FLAGS)
    if os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to run its sandbox as root
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable, headless=True, args=args
        )
        try:
            # Playwright evaluates its waits as strings, which the page's CSP forbids.
            context_options.setdefault("bypass_csp", True)
            context = await browser.new_context(
                viewport={"width": 1280, "height": 1000}, **context_options
            )
            page = await context.new_page()
            yield page
        finally:
            await browser.close()
