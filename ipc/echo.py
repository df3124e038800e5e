"""How much of a client's input an answer may repeat: errors and echoes stay small whatever the
client sent (a 10,000-node workflow must not come back as a 700 KB answer)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

MAX_ERROR_CHARS = 2000
MAX_ECHOED_VALUE_BYTES = 4096
MAX_LISTED_ITEMS = 10


def clip_text(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def list_some(items: Iterable[str], limit: int = MAX_LISTED_ITEMS, sep: str = ", ") -> str:
    """The first ``limit`` items joined, then how many more there are."""
    values = list(items)
    shown = sep.join(values[:limit])
    if len(values) > limit:
        shown += f"{sep}and {len(values) - limit} more"
    return shown


def summarize_large_values(
    params: Mapping[str, Any], limit: int = MAX_ECHOED_VALUE_BYTES
) -> dict[str, Any]:
    """``params`` for an answer or an event: a value whose JSON is over ``limit`` bytes (a
    workflow, usually) is replaced by a short description of it."""
    echoed: dict[str, Any] = {}
    for key, value in params.items():
        try:
            size = len(json.dumps(value, separators=(",", ":")))
        except (TypeError, ValueError, RecursionError):
            size = limit + 1
        if size <= limit:
            echoed[key] = value
            continue
        summary: dict[str, Any] = {"omitted": True, "json_bytes": size}
        if isinstance(value, Mapping):
            summary["keys"] = len(value)
        elif isinstance(value, list):
            summary["items"] = len(value)
        echoed[key] = summary
    return echoed
