"""The one entry point for JSON that came from outside the runner: HTTP bodies, headers, trickle
control and data messages, workflows.

``json.loads`` alone is not safe for that: nesting a thousand levels deep raises
``RecursionError`` (not a ``ValueError``), ``1e400`` becomes ``inf``, ``NaN`` and ``Infinity``
are accepted, and a 400-digit integer turns into ``OverflowError`` in the first ``float()``
that meets it. ``loads_untrusted`` bounds the size and the nesting depth and accepts finite
numbers of a sane magnitude only; every failure is an ``UntrustedJsonError`` (a ``ValueError``),
so callers answer one exception type with a 400 (or log and skip).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

DEFAULT_MAX_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_DEPTH = 64
# Integers beyond 64 bits, and floats beyond this, have no meaning in any message we accept;
# refusing them here means no later int()/float() can overflow.
MAX_INT_MAGNITUDE = 2**63
MAX_FLOAT_MAGNITUDE = 1e300
MAX_NUMBER_CHARS = 400


class UntrustedJsonError(ValueError):
    """The input is not usable JSON (malformed, too large, too deep or a number out of range)."""


def _parse_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise UntrustedJsonError("JSON number has too many digits")
    value = int(text)
    if abs(value) > MAX_INT_MAGNITUDE:
        raise UntrustedJsonError(f"JSON integer out of range (limit +/-2**63): {text[:24]}")
    return value


def _parse_float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise UntrustedJsonError("JSON number has too many digits")
    value = float(text)
    if not math.isfinite(value) or abs(value) > MAX_FLOAT_MAGNITUDE:
        raise UntrustedJsonError(f"JSON number out of range: {text[:24]}")
    return value


def _reject_constant(name: str) -> Any:
    raise UntrustedJsonError(f"JSON does not allow {name}")


_DECODER = json.JSONDecoder(
    parse_int=_parse_int, parse_float=_parse_float, parse_constant=_reject_constant
)


_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)


def nesting_depth(text: str, limit: int) -> int:
    """The deepest ``[``/``{`` nesting in ``text`` (outside strings), counted up to ``limit + 1``.

    A scan of the raw text, so a hostile document is refused before the recursive parser sees it.
    """
    if "[" not in text and "{" not in text:
        return 0
    depth = deepest = 0
    for match in _TOKENS.finditer(text):
        char = match.group()[0]
        if char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        elif char in "]}":
            depth -= 1
    return deepest


def loads_untrusted(
    data: bytes | bytearray | memoryview | str,
    *,
    what: str = "JSON",
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> Any:
    """Parse ``data`` as JSON within the limits; raise ``UntrustedJsonError`` naming ``what``."""
    if isinstance(data, memoryview):
        data = data.tobytes()
    if len(data) > max_bytes:
        raise UntrustedJsonError(f"{what} is larger than {max_bytes} bytes")
    if isinstance(data, (bytes, bytearray)):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise UntrustedJsonError(f"{what} is not UTF-8") from None
    else:
        text = data
    if nesting_depth(text, max_depth) > max_depth:
        raise UntrustedJsonError(f"{what} is nested deeper than {max_depth} levels")
    try:
        return _DECODER.decode(text.lstrip("\ufeff") if text[:1] == "\ufeff" else text)
    except UntrustedJsonError as exc:
        raise UntrustedJsonError(f"{what}: {exc}") from None
    except (ValueError, RecursionError, OverflowError):
        raise UntrustedJsonError(f"{what} is not valid JSON") from None
