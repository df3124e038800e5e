"""go-livepeer's HTTP conventions, for the stand-in: plain-text errors as Go's ``http.Error``
writes them, and the ``Livepeer`` header parsed with its orchestrator's rules."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ipc.untrusted_json import loads_untrusted

TEXT_PLAIN = "text/plain; charset=utf-8"
INT64_MAX = 2**63 - 1


def go_error(status: int, message: str) -> web.Response:
    """``http.Error(w, message, status)``: the message plus a newline, as plain text."""
    return web.Response(
        status=status,
        body=(message + "\n").encode(),
        headers={"Content-Type": TEXT_PLAIN, "X-Content-Type-Options": "nosniff"},
    )


class BadJobRequest(ValueError):
    """The ``Livepeer`` header is unusable (answered 400)."""


@dataclass(frozen=True)
class OrchJobRequest:
    """The orchestrator's view of a ``Livepeer`` header (``byoc/types.go`` ``JobRequest``)."""

    id: str
    request: str
    parameters: str
    capability: str
    timeout_seconds: int
    sender: str
    sig: str
    stream_id: str  # from ``request``, which the orchestrator parses as {"stream_id": string}


def _go_string(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if value is None:  # absent or null: Go leaves the zero value
        return ""
    if not isinstance(value, str):
        raise BadJobRequest(
            f"json: cannot unmarshal {type(value).__name__} into Go struct field JobRequest.{key} of type string"
        )
    return value


def go_int(value: Any, key: str, struct: str) -> int:
    """A JSON number decoded into a Go ``int``/``int64`` (no floats, no strings, no bools)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not -INT64_MAX - 1 <= value <= INT64_MAX
    ):
        raise ValueError(
            f"json: cannot unmarshal {json.dumps(value)} into Go struct field {struct}.{key} of type int"
        )
    return value


def parse_job_header(value: str | None) -> OrchJobRequest:
    """Decode and check the header as go-livepeer's orchestrator does (no signature checks:
    an offchain orchestrator accepts any sender; a ``sig`` must still be hex)."""
    if not value:
        raise BadJobRequest("Could not get job request: missing Livepeer header")
    try:
        raw = base64.b64decode(value, validate=True)
        data = loads_untrusted(raw)
    except (binascii.Error, ValueError) as exc:
        raise BadJobRequest(f"Could not parse job request: {exc}") from None
    if not isinstance(data, dict):
        raise BadJobRequest("Could not parse job request: not a JSON object")
    timeout = data.get("timeout_seconds")
    try:
        timeout_seconds = 0 if timeout is None else go_int(timeout, "timeout_seconds", "JobRequest")
    except ValueError as exc:
        raise BadJobRequest(str(exc)) from None
    job = {
        key: _go_string(data, key)
        for key in ("id", "request", "parameters", "capability", "sender", "sig")
    }
    if timeout_seconds == 0:
        raise BadJobRequest("no timeout_seconds set with request, timeout_seconds is required")
    try:
        request = loads_untrusted(job["request"])
    except ValueError:
        raise BadJobRequest("Unable to parse request details") from None
    if not isinstance(request, dict):
        raise BadJobRequest("Unable to parse request details")
    stream_id = request.get("stream_id", "")
    if stream_id is None:
        stream_id = ""
    if not isinstance(stream_id, str):
        raise BadJobRequest("Unable to parse request details")
    sig = job["sig"]
    if len(sig) > 130:
        sig = sig.removeprefix("0x")
    try:
        bytes.fromhex(sig)
    except ValueError:
        raise BadJobRequest("invalid job signature") from None
    return OrchJobRequest(
        id=job["id"],
        request=job["request"],
        parameters=job["parameters"],
        capability=job["capability"],
        timeout_seconds=timeout_seconds,
        sender=job["sender"],
        sig=job["sig"],
        stream_id=stream_id,
    )


def go_duration(seconds: float) -> str:
    """A duration as Go's ``time.Duration.String`` writes it: ``5s``, ``500ms``, ``1m30s``."""
    nanos = round(seconds * 1e9)
    if nanos == 0:
        return "0s"
    sign = "-" if nanos < 0 else ""
    nanos = abs(nanos)
    if nanos < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if nanos >= size:
                return sign + _trim_fraction(nanos, size) + unit
    hours, rest = divmod(nanos, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    text = _trim_fraction(rest, 10**9) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    if minutes:
        return f"{sign}{minutes}m{text}"
    return sign + text


def _trim_fraction(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{str(frac).zfill(digits).rstrip('0')}"
