"""HTTP plumbing shared by the trickle publisher and subscriber."""

from __future__ import annotations

import ssl as ssl_module

import aiohttp


def request_ssl(
    verify_tls: bool, ssl: ssl_module.SSLContext | bool | None = None
) -> ssl_module.SSLContext | bool:
    """The ``ssl=`` value for aiohttp: an explicit context wins, else verify or not."""
    if ssl is not None:
        return ssl
    return True if verify_tls else False


def streaming_timeout(connect_timeout: float) -> aiohttp.ClientTimeout:
    """Bound only the connection set-up: trickle requests legitimately wait and stream for long."""
    return aiohttp.ClientTimeout(
        total=None, connect=connect_timeout, sock_connect=connect_timeout, sock_read=None
    )


class SessionHolder:
    """Uses the caller's ``ClientSession``, or opens (lazily) and later closes its own."""

    def __init__(self, session: aiohttp.ClientSession | None) -> None:
        self._session = session
        self._owned = session is None
        self._closed = False

    def get(self) -> aiohttp.ClientSession:
        if self._closed:
            raise aiohttp.ClientConnectionError("trickle client closed")
        if self._session is None:
            # No connection limit: a subscriber keeps two long-polling GETs open, a publisher
            # an active and a preconnected POST, and many may share one session.
            connector = aiohttp.TCPConnector(limit=0)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=None)
            )
        return self._session

    async def close(self) -> None:
        self._closed = True
        if self._owned and self._session is not None:
            await self._session.close()
        self._session = None
