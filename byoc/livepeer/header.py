"""The ``Livepeer`` request header: standard base64 of a JSON job description.

go-livepeer's gateway sends it to the orchestrator; the orchestrator never forwards it to the
worker. Our runner API still accepts and checks it on ``/process/request/{capability}`` (clients
that call the runner directly send it), and the local orchestrator stand-in requires it.

Fields (go-livepeer ``byoc/types.go`` ``JobRequest``): ``id``, ``request`` (a string holding
JSON), ``parameters`` (a string holding JSON), ``capability``, ``timeout_seconds`` (integer,
required, non-zero), ``sender``, ``sig``, ``capability_url``. Unknown keys are ignored.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from ipc.untrusted_json import UntrustedJsonError, loads_untrusted

HEADER_NAME = "Livepeer"
MAX_HEADER_JSON_DEPTH = 32
# go-livepeer turns timeout_seconds into a time.Duration (int64 nanoseconds): a year is far more
# than any job needs and far inside that range.
MAX_TIMEOUT_SECONDS = 365 * 24 * 3600


class HeaderError(ValueError):
    """The header cannot be used; the message says why (answered as a 400)."""


@dataclass(frozen=True)
class JobHeader:
    """A decoded ``Livepeer`` header. ``request_json``/``parameters_json`` are parsed copies."""

    request: str
    capability: str
    timeout_seconds: int
    parameters: str = ""
    id: str = ""
    sender: str = ""
    sig: str = ""
    request_json: Any = None
    parameters_json: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def encode_header(
    *,
    capability: str,
    timeout_seconds: int,
    request: str | dict[str, Any] = "{}",
    parameters: str | dict[str, Any] | None = "{}",
    id: str = "",
    sender: str = "0x0000000000000000000000000000000000000000",
    sig: str = "",
) -> str:
    """Build a header value as an unsigned client (or an offchain gateway) would send it."""
    body: dict[str, Any] = {
        "request": request if isinstance(request, str) else json.dumps(request),
        "capability": capability,
        "timeout_seconds": timeout_seconds,
        "sender": sender,
        "sig": sig,
    }
    if parameters is not None:
        body["parameters"] = parameters if isinstance(parameters, str) else json.dumps(parameters)
    if id:
        body["id"] = id
    return base64.b64encode(json.dumps(body).encode()).decode("ascii")


def decode_header(value: str) -> JobHeader:
    """Decode and check a header value; raise ``HeaderError`` on anything unusable.

    Checks: standard base64 with padding, a JSON object, ``request`` a string holding JSON,
    ``parameters`` (when present) a string holding JSON, ``capability`` a string,
    ``timeout_seconds`` a JSON integer from 1 to ``MAX_TIMEOUT_SECONDS``; no JSON nested
    deeper than ``MAX_HEADER_JSON_DEPTH`` and no number out of range anywhere.
    """
    try:
        raw = base64.b64decode(value.strip().encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise HeaderError("Livepeer header is not valid base64") from None
    try:
        data = loads_untrusted(raw, what="Livepeer header", max_depth=MAX_HEADER_JSON_DEPTH)
    except UntrustedJsonError as exc:
        raise HeaderError(str(exc)) from None
    if not isinstance(data, dict):
        raise HeaderError("Livepeer header must be a JSON object")

    request = _string(data, "request", required=True)
    request_json = _embedded_json(request, "request")
    parameters = _string(data, "parameters", required=False)
    parameters_json = _embedded_json(parameters, "parameters") if "parameters" in data else None
    capability = _string(data, "capability", required=True)
    timeout = data.get("timeout_seconds")
    if timeout is None:
        raise HeaderError("Livepeer header: timeout_seconds is required")
    if isinstance(timeout, bool) or not isinstance(timeout, int):
        raise HeaderError("Livepeer header: timeout_seconds must be an integer")
    if not 0 < timeout <= MAX_TIMEOUT_SECONDS:
        raise HeaderError(
            f"Livepeer header: timeout_seconds must be between 1 and {MAX_TIMEOUT_SECONDS}"
        )
    known = {"id", "request", "parameters", "capability", "timeout_seconds", "sender", "sig"}
    return JobHeader(
        request=request,
        capability=capability,
        timeout_seconds=timeout,
        parameters=parameters,
        id=_string(data, "id", required=False),
        sender=_string(data, "sender", required=False),
        sig=_string(data, "sig", required=False),
        request_json=request_json,
        parameters_json=parameters_json,
        extra={k: v for k, v in data.items() if k not in known},
    )


def _string(data: dict[str, Any], key: str, *, required: bool) -> str:
    value = data.get(key)
    if value is None:
        if required:
            raise HeaderError(f"Livepeer header: {key} is required")
        return ""
    if not isinstance(value, str):
        raise HeaderError(f"Livepeer header: {key} must be a string")
    return value


def _embedded_json(text: str, key: str) -> Any:
    try:
        return loads_untrusted(
            text, what=f"Livepeer header: {key}", max_depth=MAX_HEADER_JSON_DEPTH
        )
    except UntrustedJsonError as exc:
        raise HeaderError(str(exc)) from None
