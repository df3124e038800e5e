"""Registration with orchestrators, against the local stand-in over real sockets: cases R1-R7 of
the BYOC conformance list, several orchestrators, and re-registration after an outage while busy."""

from __future__ import annotations

import json
import logging
import socket
import time

import pytest

from byoc.livepeer.standin.orchestrator import LocalOrchestrator
from byoc.registration import register_once
from tests.byoc.harness import SECRET, Env, fast_settings, running, wait_until
from tests.byoc.stream_helpers import start_via_orch, stop_via_orch

ALL = 5  # every capability is implemented and registered by default


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def register_bodies(orch: LocalOrchestrator) -> list[dict[str, object]]:
    return [json.loads(c["body"]) for c in orch.registry.calls if c["path"] == "register"]


async def test_r1_r7_register_request_shape() -> None:
    async with running(
        token="worker-token",
        capability_url="http://runner.example:8889/",
        price_per_unit=7,
        price_scaling=1000,
        currency="WEI",
        capability_description="test runner",
        wait_registered=False,
    ) as env:
        orch = env.orch
        assert orch is not None
        await wait_until(lambda: len(orch.registry.capabilities) == ALL)
        calls = [c for c in orch.registry.calls if c["path"] == "register"]
        assert all(c["authorization"] == SECRET for c in calls)  # raw secret, no Bearer
        assert all(c["content_type"] == "application/json" for c in calls)
        bodies = {b["name"]: b for b in register_bodies(orch)}
        assert set(bodies) == {
            "text-reversal",
            "comfystream-image",
            "comfystream-video",
            "whip-ingest",
            "whep-subscribe",
        }
        assert bodies["whip-ingest"]["capacity"] == 4  # a WebRTC session is a stream
        video = bodies["comfystream-video"]
        assert video == {
            "name": "comfystream-video",
            "description": "test runner",
            "url": "http://runner.example:8889",  # no trailing slash
            "capacity": 4,
            "price_per_unit": 7,
            "price_scaling": 1000,
            "currency": "WEI",
            "token": "worker-token",  # R7
        }
        for body in bodies.values():
            for key in ("capacity", "price_per_unit", "price_scaling"):
                assert type(body[key]) is int  # JSON integers, never strings or floats
        assert bodies["text-reversal"]["capacity"] == 32  # one-shot jobs advertise --max-jobs
        # The "ok" body (not JSON) counted as success.
        assert env.runner.registration is not None
        assert env.runner.registration.snapshot()[orch.url]["state"] == "registered"


async def test_only_the_chosen_capabilities_and_no_token_key_without_a_token() -> None:
    async with running(
        capability_names=("text-reversal", "whep-subscribe"), wait_registered=False
    ) as env:
        orch = env.orch
        assert orch is not None
        registration = env.runner.registration
        assert registration is not None
        # One whole round (every chosen capability) is done once it counts as a registration.
        await wait_until(lambda: registration.snapshot()[orch.url]["registrations"] >= 1)
        assert set(orch.registry.capabilities) == {"text-reversal", "whep-subscribe"}
        assert "token" not in register_bodies(orch)[0]


async def test_r2_orchestrator_unreachable_at_first_then_registered() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    async with running(with_orchestrator=False, orch_urls=(url,), register_retry_max_s=0.3) as env:
        registration = env.runner.registration
        assert registration is not None
        # refusing connections meanwhile
        await wait_until(lambda: registration.snapshot()[url]["state"] == "unreachable")
        orch = LocalOrchestrator(secret=SECRET)
        await orch.start(port=port)
        try:
            await wait_until(lambda: len(orch.registry.capabilities) == ALL, timeout=60)
        finally:
            await orch.close()


async def test_r3_wrong_secret_is_logged_once_and_retried_slowly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="byoc.registration")
    started = time.monotonic()
    async with running(
        orch_secret="not-the-secret", register_rejected_retry_s=0.5, wait_registered=False
    ) as env:
        orch = env.orch
        assert orch is not None
        orch.registry.secret = "the-real-secret"
        await wait_until(lambda: len(orch.registry.calls) >= 3)  # retried
        # Not in a tight loop: two retries take at least two retry intervals. A lower bound
        # that a busy machine can only make easier to meet.
        assert time.monotonic() - started >= 2 * 0.5
        assert not orch.registry.capabilities
    errors = [r for r in caplog.records if "invalid authorization" in r.getMessage()]
    assert len(errors) == 1
    assert "ORCH_SECRET" in errors[0].getMessage()


async def test_r4_reregisters_after_the_orchestrator_forgot_us_while_idle() -> None:
    async with running(register_interval_s=0.3) as env:
        orch = env.orch
        assert orch is not None
        orch.registry.forget_all()  # what an orchestrator restart does
        await wait_until(lambda: len(orch.registry.capabilities) == ALL, timeout=60)


async def test_r5_no_reregistration_while_a_stream_is_live() -> None:
    async with running(register_interval_s=0.2) as env:
        orch = env.orch
        assert orch is not None
        async with await start_via_orch(env, "busy") as r:
            assert r.status == 200
        before = len(orch.registry.calls)
        probes = orch.registry.probes
        # Three busy rounds (each only checks that the orchestrator answers) ...
        await wait_until(lambda: orch.registry.probes >= probes + 3)
        assert len(orch.registry.calls) == before  # ... and the load counter is left alone
        async with await stop_via_orch(env, "busy") as r:
            assert r.status == 200
        await wait_until(lambda: len(orch.registry.calls) > before, timeout=60)  # idle again


async def test_outage_while_busy_reregisters_at_once_when_the_orchestrator_is_back() -> None:
    """A stream keeps the runner busy (its channels live on another stand-in); the orchestrator
    we register with goes away and comes back empty: we register again without waiting for idle."""
    media_orch = LocalOrchestrator(secret=SECRET, keepalive_interval_s=0.2)
    await media_orch.start()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    orch = LocalOrchestrator(secret=SECRET)
    await orch.start(port=port)
    try:
        async with running(
            with_orchestrator=False, orch_urls=(url,), register_interval_s=0.2
        ) as env:
            await wait_until(lambda: len(orch.registry.capabilities) == ALL)
            media_orch.registry.capabilities.update(orch.registry.capabilities)
            async with await start_via_orch(env, "busy", orch_url=media_orch.url) as r:
                assert r.status == 200
            await orch.close()
            registration = env.runner.registration
            assert registration is not None
            # the busy-time check notices the outage
            await wait_until(lambda: registration.snapshot()[url]["state"] == "unreachable")
            orch = LocalOrchestrator(secret=SECRET)
            await orch.start(port=port)
            await wait_until(lambda: len(orch.registry.capabilities) == ALL, timeout=60)
            assert env.runner.runtime.busy()
    finally:
        await orch.close()
        await media_orch.close()


async def test_several_orchestrators_and_r6_unregister_on_shutdown() -> None:
    first, second = LocalOrchestrator(secret=SECRET), LocalOrchestrator(secret=SECRET)
    await first.start()
    await second.start()
    try:
        async with running(with_orchestrator=False, orch_urls=(first.url, second.url)):
            for orch in (first, second):
                await wait_until(lambda orch=orch: len(orch.registry.capabilities) == ALL)
        for orch in (first, second):  # graceful stop: unregistered everywhere
            unregister = [c for c in orch.registry.calls if c["path"] == "unregister"]
            names = sorted(c["body"].decode() for c in unregister)
            assert names == [
                "comfystream-image",
                "comfystream-video",
                "text-reversal",
                "whep-subscribe",
                "whip-ingest",
            ]
            assert all(c["authorization"] == SECRET for c in unregister)
            assert all((c["content_type"] or "").startswith("text/plain") for c in unregister)
            assert not orch.registry.capabilities
    finally:
        await first.close()
        await second.close()


async def test_register_once_reports_each_failure() -> None:
    orch = LocalOrchestrator(secret=SECRET)
    await orch.start()
    try:
        assert await register_once(fast_settings(orch_urls=(orch.url,))) == []
        assert len(orch.registry.capabilities) == ALL
        failures = await register_once(fast_settings(orch_urls=(orch.url,), orch_secret="wrong"))
        assert len(failures) == ALL and all("invalid authorization" in f for f in failures)
        dead = f"http://127.0.0.1:{free_port()}"
        failures = await register_once(
            fast_settings(orch_urls=(dead,)), attempts=2, retry_delay_s=0.05
        )
        assert len(failures) == ALL and all("unreachable" in f for f in failures)
    finally:
        await orch.close()


async def health_of(env: Env, orch_url: str) -> str:
    async with env.http.get(env.url + "/health") as r:
        body = await r.json()
    return str(body["orchestrators"][orch_url]["state"])


async def test_a_restart_while_busy_shows_unreachable_then_registers_once_with_free_capacity() -> (
    None
):
    """/health said "registered" all through the outage, and a busy runner never registered
    again with the restarted orchestrator (which forgets every runner)."""
    media_orch = LocalOrchestrator(secret=SECRET, keepalive_interval_s=0.2)
    await media_orch.start()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    orch = LocalOrchestrator(secret=SECRET)
    await orch.start(port=port)
    try:
        async with running(
            with_orchestrator=False,
            orch_urls=(url,),
            register_interval_s=0.2,
            register_retry_max_s=2.0,
            capacity=3,
        ) as env:
            await wait_until(lambda: len(orch.registry.capabilities) == ALL)
            media_orch.registry.capabilities.update(orch.registry.capabilities)
            async with await start_via_orch(env, "busy", orch_url=media_orch.url) as r:
                assert r.status == 200
            await orch.close()
            await wait_until(lambda: _state_is(env, url, "unreachable"), timeout=10)
            orch = LocalOrchestrator(secret=SECRET)
            await orch.start(port=port)
            await wait_until(lambda: len(orch.registry.capabilities) == ALL, timeout=35)
            await wait_until(lambda: _state_is(env, url, "registered"), timeout=10)
            assert orch.registry.capabilities["comfystream-video"].capacity == 2  # 3 - 1 live
            assert env.runner.runtime.busy()
    finally:
        await orch.close()
        await media_orch.close()


async def _state_is(env: Env, orch_url: str, state: str) -> bool:
    return await health_of(env, orch_url) == state


async def test_a_stream_whose_channels_vanish_makes_the_runner_register_again() -> None:
    """A restart too quick for the periodic check (here: an hour apart) is seen by the stream:
    its channels answer 404 at the restarted orchestrator."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    orch = LocalOrchestrator(secret=SECRET, keepalive_interval_s=0.2)
    await orch.start(port=port)
    try:
        async with running(
            with_orchestrator=False, orch_urls=(url,), orch_check_interval_s=3600.0
        ) as env:
            env.orch = orch
            await wait_until(lambda: len(orch.registry.capabilities) == ALL)
            async with await start_via_orch(env, "vanish") as r:
                assert r.status == 200
            await wait_until(lambda: env.runner.runtime.busy())
            await orch.close()
            orch = LocalOrchestrator(secret=SECRET, keepalive_interval_s=0.2)
            await orch.start(port=port)
            await wait_until(lambda: len(orch.registry.capabilities) == ALL, timeout=35)
            env.orch = orch
    finally:
        await orch.close()


async def test_trickle_verify_tls_governs_registration_with_a_self_signed_orchestrator() -> None:
    orch = LocalOrchestrator(secret=SECRET)
    await orch.start(tls=True)  # a fresh self-signed certificate, as go-livepeer serves
    try:
        assert orch.url.startswith("https://")
        strict = fast_settings(orch_urls=(orch.url,), trickle_verify_tls=True)
        failures = await register_once(strict)
        assert len(failures) == ALL and all("unreachable" in f for f in failures), failures
        assert not orch.registry.capabilities
        assert await register_once(fast_settings(orch_urls=(orch.url,))) == []  # default off
        assert len(orch.registry.capabilities) == ALL
    finally:
        await orch.close()
