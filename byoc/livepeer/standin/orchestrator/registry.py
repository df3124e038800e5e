"""The stand-in's capability registry: go-livepeer's ``/capability/register`` and ``/unregister``.

Semantics (``byoc/job_orchestrator.go``, ``core/external_capabilities.go``): POST only (else
405); ``Authorization`` must equal the secret exactly (else 400 ``invalid authorization``); the
body decodes strictly into ``ExternalCapability`` (wrong types -> 400); re-registering a name
replaces it with a fresh entry whose load is 0; success is 200 ``ok`` with a JSON Content-Type.
Unregister takes the bare name as plain text and always answers ``ok``. Registrations live in
memory only: no heartbeat, no expiry.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from byoc.livepeer.standin.orchestrator.gohttp import go_error, go_int
from ipc.untrusted_json import loads_untrusted

log = logging.getLogger(__name__)

FIXED_PRICE_CURRENCIES = ("", "wei", "eth")


@dataclass
class ExternalCapability:
    name: str
    url: str
    description: str = ""
    capacity: int = 0
    price_per_unit: int = 0
    price_scaling: int = 1
    currency: str = ""
    token: str = ""
    load: int = 0  # in-flight jobs and streams (never checked against capacity)


@dataclass
class Registry:
    """Registered capabilities by name, plus a log of every register/unregister call."""

    secret: str = ""
    capabilities: dict[str, ExternalCapability] = field(default_factory=dict)
    calls: list[dict[str, Any]] = field(default_factory=list)
    probes: int = 0
    """``GET /capability/register`` requests: a runner checking that we answer (changes nothing)."""

    def get(self, name: str) -> ExternalCapability | None:
        return self.capabilities.get(name)

    def remove(self, name: str, why: str) -> None:
        if self.capabilities.pop(name, None) is not None:
            log.warning("capability %s removed: %s", name, why)

    def forget_all(self) -> None:
        """What an orchestrator restart does to registrations."""
        self.capabilities.clear()

    def release(self, capability: ExternalCapability) -> None:
        capability.load -= 1  # may go negative after a re-registration, as in go-livepeer

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization", "") == self.secret

    async def handle_register(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            if request.method == "GET":
                self.probes += 1
            return go_error(405, "Method not allowed")
        body = await request.read()
        self.calls.append(
            {
                "path": "register",
                "authorization": request.headers.get("Authorization"),
                "content_type": request.headers.get("Content-Type"),
                "body": body,
            }
        )
        if not self._authorized(request):
            return go_error(400, "invalid authorization")
        try:
            capability = _decode_capability(body)
        except ValueError as exc:
            return go_error(400, f"Error registering capability: {exc}")
        if capability.currency.lower() not in FIXED_PRICE_CURRENCIES:
            # go-livepeer dereferences a missing price feed here and panics; the server
            # recovers and drops the connection without an answer.
            log.error(
                "capability %s: currency %r needs a price feed; dropping the connection",
                capability.name,
                capability.currency,
            )
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)
        self.capabilities[capability.name] = capability
        log.info(
            "capability %s registered at %s (capacity %d)",
            capability.name,
            capability.url,
            capability.capacity,
        )
        return web.Response(status=200, body=b"ok", headers={"Content-Type": "application/json"})

    async def handle_unregister(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return go_error(405, "Method not allowed")
        body = await request.read()
        self.calls.append(
            {
                "path": "unregister",
                "authorization": request.headers.get("Authorization"),
                "content_type": request.headers.get("Content-Type"),
                "body": body,
            }
        )
        if not self._authorized(request):
            return go_error(400, "invalid authorization")
        name = body.decode("utf-8", "replace")
        if self.capabilities.pop(name, None) is not None:
            log.info("capability %s unregistered", name)
        return web.Response(status=200, body=b"ok", headers={"Content-Type": "application/json"})


def _decode_capability(body: bytes) -> ExternalCapability:
    try:
        data = loads_untrusted(body)
    except ValueError as exc:
        raise ValueError(f"invalid character in JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(
            "json: cannot unmarshal non-object into Go value of type core.ExternalCapability"
        )
    strings = {}
    for key in ("name", "description", "url", "currency", "token"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise ValueError(
                f"json: cannot unmarshal {json.dumps(value)} into Go struct field ExternalCapability.{key} of type string"
            )
        strings[key] = value or ""
    ints = {}
    for key in ("capacity", "price_per_unit", "price_scaling"):
        value = data.get(key)
        ints[key] = 0 if value is None else go_int(value, key, "ExternalCapability")
    return ExternalCapability(
        name=strings["name"],
        url=strings["url"],
        description=strings["description"],
        capacity=ints["capacity"],
        price_per_unit=ints["price_per_unit"],
        price_scaling=ints["price_scaling"] or 1,
        currency=strings["currency"],
        token=strings["token"],
    )
