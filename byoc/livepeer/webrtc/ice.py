"""ICE set-up of a worker that holds peer connections (aiortc/aioice).

- Host candidates: the configured addresses, or every address aioice finds; on a host whose only
  interface is loopback (a test network namespace) 127.0.0.1 is offered, which aioice alone never
  gathers.
- A UDP port range: host candidates bind within ``[first, last]`` instead of an ephemeral port,
  so a firewall or a container port mapping can let them in.

Both are process-wide (aioice reads its addresses through a module function and binds on the
running loop): ``install`` is called once when the worker starts.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer

from ipc.messages import IceServer

log = logging.getLogger(__name__)

_original_host_addresses = aioice.ice.get_host_addresses


@dataclass(frozen=True)
class IceNetwork:
    """A worker's ICE settings (from the runner's ``--webrtc-*`` options)."""

    host_addresses: tuple[str, ...] = ()
    port_range: tuple[int, int] | None = None

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> IceNetwork:
        ports = options.get("port_range")
        return cls(
            host_addresses=tuple(options.get("host_addresses", ())),
            port_range=(int(ports[0]), int(ports[1])) if ports else None,
        )


def host_addresses(configured: Sequence[str], use_ipv4: bool, use_ipv6: bool) -> list[str]:
    """The addresses to gather host candidates on."""
    if configured:
        return [a for a in configured if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]
    found = _original_host_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
    if not found and use_ipv4:
        return ["127.0.0.1"]  # loopback only: aioice would offer nothing at all
    return found


def install(network: IceNetwork) -> None:
    """Apply ``network`` to this process's aioice (see the module docstring)."""

    def chosen(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return host_addresses(network.host_addresses, use_ipv4, use_ipv6)

    aioice.ice.get_host_addresses = chosen  # aioice has no parameter for it
    if network.port_range is not None:
        _bind_in_range(asyncio.get_running_loop(), *network.port_range)


def _bind_in_range(loop: asyncio.AbstractEventLoop, first: int, last: int) -> None:
    original = loop.create_datagram_endpoint
    ports = itertools.cycle(range(first, last + 1))
    count = last - first + 1

    async def create_datagram_endpoint(protocol_factory: Any, *args: Any, **kwargs: Any) -> Any:
        local = kwargs.get("local_addr")
        if not local or local[1] != 0:
            return await original(protocol_factory, *args, **kwargs)
        error: OSError | None = None
        for _ in range(count):
            kwargs["local_addr"] = (local[0], next(ports))
            try:
                return await original(protocol_factory, *args, **kwargs)
            except OSError as exc:
                error = exc
        raise OSError(f"no free UDP port in {first}-{last}") from error

    loop.create_datagram_endpoint = create_datagram_endpoint  # type: ignore[method-assign]


def rtc_configuration(servers: Sequence[IceServer]) -> RTCConfiguration:
    """An aiortc configuration with these STUN/TURN servers (none: host candidates only)."""
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(
                urls=list(s.urls), username=s.username or None, credential=s.credential or None
            )
            for s in servers
        ]
    )
