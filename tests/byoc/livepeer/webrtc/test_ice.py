"""Host candidate addresses and the UDP port range of a worker's peer connections."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import aioice.ice
import pytest

from byoc.livepeer.webrtc import ice
from byoc.serve import webrtc_worker_options
from tests.byoc.harness import fast_settings


@pytest.fixture(autouse=True)
def restore_aioice() -> Iterator[None]:
    original = aioice.ice.get_host_addresses
    yield
    aioice.ice.get_host_addresses = original


def test_configured_addresses_win_and_loopback_is_offered_when_nothing_else_exists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert ice.host_addresses(["10.1.2.3", "::1"], True, False) == ["10.1.2.3"]
    monkeypatch.setattr(ice, "_original_host_addresses", lambda use_ipv4, use_ipv6: [])
    assert ice.host_addresses([], True, False) == ["127.0.0.1"]
    monkeypatch.setattr(ice, "_original_host_addresses", lambda use_ipv4, use_ipv6: ["10.9.9.9"])
    assert ice.host_addresses([], True, False) == ["10.9.9.9"]


def free_range(count: int) -> tuple[int, int]:
    """A run of ``count`` UDP ports that are free now."""
    for first in range(41000, 60000, 97):
        socks = []
        try:
            for port in range(first, first + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return first, first + count - 1
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range")


async def test_candidates_bind_within_the_port_range_and_fail_when_it_is_full() -> None:
    first, last = free_range(3)
    loop = asyncio.get_running_loop()
    ice.install(ice.IceNetwork(host_addresses=("127.0.0.1",), port_range=(first, last)))
    try:
        transports = []
        for _ in range(3):
            transport, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
            )
            transports.append(transport)
        ports = {t.get_extra_info("sockname")[1] for t in transports}
        assert ports == {first, first + 1, last}
        with pytest.raises(OSError, match="no free UDP port"):
            await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
            )
        for t in transports:
            t.close()
        assert aioice.ice.get_host_addresses(True, False) == ["127.0.0.1"]
    finally:
        del loop.create_datagram_endpoint  # back to the loop class's own method


def test_the_port_range_is_split_between_ingest_and_egress() -> None:
    options = webrtc_worker_options(fast_settings(webrtc_ports=(40000, 40099)))
    assert options["ingest"]["webrtc"]["port_range"] == [40000, 40049]
    assert options["egress"]["webrtc"]["port_range"] == [40050, 40099]
    assert webrtc_worker_options(fast_settings())["ingest"]["webrtc"]["port_range"] is None
