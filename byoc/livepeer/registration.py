"""Client of go-livepeer's capability registration: ``POST /capability/register`` and
``/capability/unregister`` on an orchestrator.

Wire facts (go-livepeer ``byoc/job_orchestrator.go``): the ``Authorization`` header carries the
orchestrator secret as is (no ``Bearer``); the body is a JSON object whose ``capacity``,
``price_per_unit`` and ``price_scaling`` must be JSON integers; success is 200 with the body
``ok`` (not JSON, although the Content-Type says so); a wrong secret gets 400
``invalid authorization``. Unregistering sends the bare capability name as plain text.
Orchestrators serve HTTPS with self-signed certificates, so TLS verification is off.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiohttp

REGISTER_PATH = "/capability/register"
UNREGISTER_PATH = "/capability/unregister"
DEFAULT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Capability:
    """One capability as the orchestrator stores it (go-livepeer ``ExternalCapability``)."""

    name: str
    url: str
    description: str = ""
    capacity: int = 1
    price_per_unit: int = 0
    price_scaling: int = 1
    currency: str = "wei"
    token: str = ""

    def to_json(self) -> dict[str, Any]:
        """The registration body; ``token`` only when one is set."""
        body: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "url": self.url.rstrip("/"),
            "capacity": int(self.capacity),
            "price_per_unit": int(self.price_per_unit),
            "price_scaling": int(self.price_scaling),
            "currency": self.currency,
        }
        if self.token:
            body["token"] = self.token
        return body


class RegistrationError(Exception):
    """Base class: the orchestrator did not take the request."""


class OrchestratorUnreachable(RegistrationError):
    """No HTTP answer (connection refused, reset, timeout, TLS failure...)."""


class RegistrationRejected(RegistrationError):
    """The orchestrator answered with an error status."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body.strip() or '(empty body)'}")
        self.status = status
        self.body = body.strip()

    @property
    def bad_secret(self) -> bool:
        return self.status == 400 and "invalid authorization" in self.body.lower()


def _join(orch_url: str, path: str) -> str:
    return orch_url.rstrip("/") + path


async def _post(
    http: aiohttp.ClientSession,
    url: str,
    secret: str,
    *,
    data: bytes,
    content_type: str,
    timeout_s: float,
    verify_tls: bool,
) -> str:
    headers = {"Authorization": secret, "Content-Type": content_type}
    try:
        async with http.post(
            url,
            data=data,
            headers=headers,
            ssl=verify_tls,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:
            text = await response.text(errors="replace")
            if response.status != 200:
                raise RegistrationRejected(response.status, text)
            return text
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
        raise OrchestratorUnreachable(f"{url}: {type(exc).__name__}: {exc}") from exc


async def register(
    http: aiohttp.ClientSession,
    orch_url: str,
    secret: str,
    capability: Capability,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    verify_tls: bool = False,
) -> None:
    """Register (or re-register) one capability; raises ``RegistrationError`` on failure."""
    body = json.dumps(capability.to_json()).encode()
    await _post(
        http,
        _join(orch_url, REGISTER_PATH),
        secret,
        data=body,
        content_type="application/json",
        timeout_s=timeout_s,
        verify_tls=verify_tls,
    )


async def probe(
    http: aiohttp.ClientSession,
    orch_url: str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    verify_tls: bool = False,
) -> bool:
    """True when the orchestrator answers HTTP at all. Uses ``GET /capability/register``, which
    go-livepeer refuses with 405 and which changes nothing (registering would reset its load)."""
    try:
        async with http.get(
            _join(orch_url, REGISTER_PATH),
            ssl=verify_tls,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:
            await response.read()
            return True
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
        return False


async def unregister(
    http: aiohttp.ClientSession,
    orch_url: str,
    secret: str,
    name: str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    verify_tls: bool = False,
) -> None:
    """Remove one capability (plain-text name); raises ``RegistrationError`` on failure."""
    await _post(
        http,
        _join(orch_url, UNREGISTER_PATH),
        secret,
        data=name.encode(),
        content_type="text/plain",
        timeout_s=timeout_s,
        verify_tls=verify_tls,
    )
