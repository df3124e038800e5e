"""The STUN/TURN servers given to WebRTC peers: the configured list, plus Twilio's TURN servers
when a Twilio account is configured.

Twilio credentials come from its token API (``POST /2010-04-01/Accounts/{sid}/Tokens.json``,
HTTP basic auth) when a session starts, and are cached until they expire (their ``ttl``, less a
margin). A failure is logged once (until the next success) and the configured list is used.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from typing import Any

import aiohttp

from byoc.settings import Settings
from ipc.messages import IceServer

log = logging.getLogger(__name__)

TWILIO_TIMEOUT_S = 5.0
EXPIRY_MARGIN_S = 60.0


def _server(entry: dict[str, Any]) -> IceServer | None:
    urls = entry.get("urls", entry.get("url"))
    urls = [urls] if isinstance(urls, str) else urls
    if not isinstance(urls, list) or not urls:
        return None
    return IceServer(
        urls=[str(u) for u in urls],
        username=str(entry.get("username") or ""),
        credential=str(entry.get("credential") or ""),
    )


class IceServers:
    """Where sessions get their ICE servers (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.configured = [s for s in map(_server, settings.ice_servers) if s is not None]
        self.twilio_fetches = 0
        self._twilio: list[IceServer] = []
        self._expires_at = 0.0
        self._failing = False
        self._lock = asyncio.Lock()

    @property
    def twilio_enabled(self) -> bool:
        return bool(self.settings.twilio_account_sid and self.settings.twilio_auth_token)

    async def current(self) -> list[IceServer]:
        """The servers for a new peer connection."""
        if not self.twilio_enabled:
            return list(self.configured)
        async with self._lock:
            if time.monotonic() >= self._expires_at:
                await self._refresh()
        return [*self.configured, *self._twilio]

    async def _refresh(self) -> None:
        s = self.settings
        url = f"{s.twilio_url.rstrip('/')}/2010-04-01/Accounts/{s.twilio_account_sid}/Tokens.json"
        self.twilio_fetches += 1
        try:
            async with aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=TWILIO_TIMEOUT_S)
            ) as http:
                credentials = f"{s.twilio_account_sid}:{s.twilio_auth_token}".encode()
                auth = {"Authorization": "Basic " + base64.b64encode(credentials).decode()}
                async with http.post(url, headers=auth) as response:
                    if response.status >= 300:
                        raise RuntimeError(f"HTTP {response.status}")
                    body = await response.json(content_type=None)
            servers = [x for x in map(_server, body.get("ice_servers") or []) if x is not None]
            if not servers:
                raise RuntimeError("no ice_servers in the answer")
            ttl = float(body.get("ttl") or 3600)
        except (aiohttp.ClientError, asyncio.TimeoutError, RuntimeError, ValueError) as exc:
            if not self._failing:
                log.warning("Twilio TURN credentials unavailable (%s); using --ice-servers", exc)
            self._failing = True
            self._twilio = []
            self._expires_at = time.monotonic() + min(EXPIRY_MARGIN_S, 30.0)
            return
        if self._failing:
            log.info("Twilio TURN credentials available again")
        self._failing = False
        self._twilio = servers
        self._expires_at = time.monotonic() + max(1.0, ttl - EXPIRY_MARGIN_S)


def link_headers(servers: list[IceServer]) -> list[str]:
    """One ``Link: <url>; rel="ice-server"`` value per server URL (RFC 9725 section 4.4)."""
    links = []
    for server in servers:
        for url in server.urls:
            link = f'<{url}>; rel="ice-server"'
            if server.username:
                link += (
                    f'; username="{server.username}"; credential="{server.credential}"'
                    '; credential-type="password"'
                )
            links.append(link)
    return links


def as_json(servers: list[IceServer]) -> list[dict[str, Any]]:
    """The servers in ``RTCIceServer`` JSON form (capability answers)."""
    out = []
    for server in servers:
        entry: dict[str, Any] = {"urls": list(server.urls)}
        if server.username:
            entry["username"] = server.username
            entry["credential"] = server.credential
        out.append(entry)
    return out
