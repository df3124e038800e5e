"""``comfystream-byoc health``: the container HEALTHCHECK, answered from ``GET /health``.

Healthy when the runner answers and its workers are up; a worker that is being restarted once in
a while still counts as up, a crash-looping one does not (that is the state an operator must see).
A starting or draining runner (one that takes no new work) is not healthy.
Standard library only, so the check stays cheap every few seconds.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def check_health(url: str, timeout_s: float = 5.0) -> tuple[bool, str]:
    """``(ok, reason)`` for the runner at ``url`` (its base URL, ``/health`` is appended)."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout_s) as response:
            body: Any = json.load(response)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return False, f"no answer from {url}: {exc}"
    if not isinstance(body, dict):
        return False, "unexpected /health answer"
    status = body.get("status")
    workers = body.get("workers") or {}
    looping = sorted(
        name for name, w in workers.items() if isinstance(w, dict) and w.get("crash_loop")
    )
    if looping:
        return False, f"crash-looping workers: {', '.join(looping)}"
    if status in ("healthy", "degraded"):
        return True, str(status)
    return False, f"status {status}"
