"""The browser page (``GET /``) and the example workflows (``GET /workflows``), shipped as
package data: plain HTML, JavaScript and CSS with no build step, and one JSON file per workflow
(``{"name", "description", "workflow"}``)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

ASSETS: dict[str, str] = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "counter.js": "text/javascript",
    "style.css": "text/css",
}
"""The page's files, by name, with their content types."""

PAGE = "index.html"
# The order the page lists them in; files not named here follow by name.
WORKFLOW_ORDER = ("passthrough", "invert", "blur", "sharpen", "mirror", "glow")


def asset(name: str) -> bytes:
    """The bytes of one of the page's files (``KeyError`` for a name not in ``ASSETS``)."""
    if name not in ASSETS:
        raise KeyError(name)
    return resources.files(__package__).joinpath(name).read_bytes()


@cache
def example_workflows() -> tuple[dict[str, Any], ...]:
    """The example workflows, each ``{"name", "description", "workflow"}``, in page order."""
    folder = resources.files(__package__).joinpath("workflows")
    entries = []
    for item in folder.iterdir():
        if item.name.endswith(".json"):
            entry = json.loads(item.read_text(encoding="utf-8"))
            entries.append(
                {
                    "name": str(entry["name"]),
                    "description": str(entry["description"]),
                    "workflow": entry["workflow"],
                }
            )

    def order(entry: dict[str, Any]) -> tuple[int, str]:
        name = entry["name"]
        rank = WORKFLOW_ORDER.index(name) if name in WORKFLOW_ORDER else len(WORKFLOW_ORDER)
        return rank, name

    return tuple(sorted(entries, key=order))
