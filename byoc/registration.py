"""Keeps the runner registered with its orchestrators, for as long as it runs.

go-livepeer keeps registrations in memory only (lost when the orchestrator restarts), evicts a
capability when it cannot reach the worker or gets a 401 from it, and resets the capability's
load counter to zero on every re-registration. Hence, per orchestrator:

- register every capability at start-up, retrying with exponential backoff while unreachable;
- a 400 ``invalid authorization`` is logged once, clearly, and retried slowly;
- every ``orch_check_interval_s``, busy or idle, check that the orchestrator still answers; a
  refused or reset connection (or a failed registration) marks it ``unreachable`` (as ``/health``
  reports it) until a registration succeeds again, retried with backoff: a restarted
  orchestrator has forgotten us, so coming back means registering once more;
- a stream whose channels vanished from the orchestrator (404 without a stop from it) is the
  other sign of a restart: re-register once at once;
- re-register every ``register_interval_s``, but only while the runner is idle (no live session,
  no job in flight): a re-registration resets the orchestrator's load count;
- every registration advertises the capacity actually free (configured minus what is in use),
  so one made while streams run does not let the orchestrator overbook;
- re-register at once after we answered a request with 401 (the orchestrator evicts the
  capability for that);
- on graceful shutdown, unregister every capability (plain-text name).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

import aiohttp

from byoc import capabilities as caps
from byoc.livepeer.registration import (
    Capability,
    OrchestratorUnreachable,
    RegistrationRejected,
    probe,
    register,
    unregister,
)
from byoc.settings import Settings

log = logging.getLogger(__name__)

FIRST_RETRY_S = 1.0
UNREGISTER_TIMEOUT_S = 2.0


def build_capabilities(settings: Settings, public_url: str | None = None) -> list[Capability]:
    """The capabilities to register, from the settings (not-implemented ones are skipped).

    The stream capability advertises ``--capacity`` (live sessions); one-shot job capabilities
    advertise ``--max-jobs`` (jobs in flight), which is what the runner admits for them.
    """
    chosen, skipped = caps.registrable(settings.capability_names)
    for name in skipped:
        log.warning("capability %s is not implemented yet; not registering it", name)
    url = (public_url or settings.public_url).rstrip("/")
    return [
        Capability(
            name=name,
            url=url,
            description=settings.capability_description,
            capacity=settings.capacity if name in caps.STREAM_CAPABILITIES else settings.max_jobs,
            price_per_unit=settings.price_per_unit,
            price_scaling=settings.price_scaling,
            currency=settings.currency,
            token=settings.token,
        )
        for name in chosen
    ]


class OrchestratorState(str, enum.Enum):
    REGISTERING = "registering"
    REGISTERED = "registered"
    UNREACHABLE = "unreachable"
    REJECTED = "rejected"


@dataclass
class Orchestrator:
    """What we know about one orchestrator."""

    url: str
    state: OrchestratorState = OrchestratorState.REGISTERING
    registrations: int = 0  # successful rounds
    last_error: str = ""
    urgent: asyncio.Event = field(default_factory=asyncio.Event)
    urgent_reason: str = ""
    logged_rejection: str = ""

    def hosts(self, url: str) -> bool:
        """Whether ``url`` (e.g. a trickle channel) is served by this orchestrator."""
        mine, theirs = urlsplit(self.url), urlsplit(url)
        return (mine.hostname, mine.port) == (theirs.hostname, theirs.port)


class RegistrationService:
    """One background task per orchestrator (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        capabilities: Sequence[Capability],
        is_busy: Callable[[], bool],
        in_use: Callable[[Capability], int] | None = None,
    ) -> None:
        """``in_use(capability)``: how much of its capacity is taken now (streams or jobs)."""
        self.settings = settings
        self.capabilities = list(capabilities)
        self.is_busy = is_busy
        self.in_use = in_use
        self.orchestrators = [Orchestrator(url.rstrip("/")) for url in settings.orch_urls]
        self._tasks: list[asyncio.Task[None]] = []
        self._http: aiohttp.ClientSession | None = None

    def start(self) -> None:
        if not self.orchestrators or not self.capabilities:
            return
        self._http = aiohttp.ClientSession()
        names = ", ".join(c.name for c in self.capabilities)
        for orch in self.orchestrators:
            log.info("registering %s at %s as %s", names, orch.url, self.capabilities[0].url)
            self._tasks.append(asyncio.create_task(self._run(orch), name=f"register-{orch.url}"))

    def evicted(self) -> None:
        """We did something the orchestrator evicts us for (a 401): re-register at once."""
        for orch in self.orchestrators:
            orch.urgent_reason = "evicted"
            orch.urgent.set()

    def channels_lost(self, url: str) -> None:
        """A stream's channel at ``url`` vanished (404) without a stop from the orchestrator:
        it has probably restarted and forgotten us. Its orchestrator checks and re-registers."""
        for orch in self.orchestrators:
            if orch.hosts(url) and orch.state is OrchestratorState.REGISTERED:
                log.warning("orchestrator %s lost the channel %s; registering again", orch.url, url)
                orch.urgent_reason = "a stream's channels vanished"
                orch.urgent.set()

    def snapshot(self) -> dict[str, dict[str, object]]:
        return {
            o.url: {
                "state": o.state.value,
                "registrations": o.registrations,
                "last_error": o.last_error or None,
            }
            for o in self.orchestrators
        }

    async def stop(self, *, unregister_all: bool = True) -> None:
        """Stop retrying; unregister from every orchestrator we registered with."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._http is None:
            return
        try:
            if unregister_all:
                await asyncio.gather(
                    *(self._unregister(o) for o in self.orchestrators if o.registrations > 0)
                )
        finally:
            await self._http.close()
            self._http = None

    # --- internals -------------------------------------------------------------------------

    async def _unregister(self, orch: Orchestrator) -> None:
        assert self._http is not None
        for capability in self.capabilities:
            try:
                await unregister(
                    self._http,
                    orch.url,
                    self.settings.orch_secret,
                    capability.name,
                    timeout_s=UNREGISTER_TIMEOUT_S,
                    verify_tls=self.settings.trickle_verify_tls,
                )
                log.info("unregistered %s from %s", capability.name, orch.url)
            except (OrchestratorUnreachable, RegistrationRejected) as exc:
                log.warning("could not unregister %s from %s: %s", capability.name, orch.url, exc)

    def _free(self, capability: Capability) -> Capability:
        if self.in_use is None:
            return capability
        return replace(capability, capacity=max(0, capability.capacity - self.in_use(capability)))

    async def _register_all(self, orch: Orchestrator) -> None:
        assert self._http is not None
        for capability in self.capabilities:
            await register(
                self._http,
                orch.url,
                self.settings.orch_secret,
                self._free(capability),
                verify_tls=self.settings.trickle_verify_tls,
            )

    async def _run(self, orch: Orchestrator) -> None:
        retry_max = self.settings.register_retry_max_s
        backoff = min(FIRST_RETRY_S, retry_max)
        while True:
            orch.urgent.clear()
            try:
                await self._register_all(orch)
            except OrchestratorUnreachable as exc:
                if orch.state is not OrchestratorState.UNREACHABLE:
                    log.warning(
                        "orchestrator %s unreachable, will keep retrying: %s", orch.url, exc
                    )
                orch.state = OrchestratorState.UNREACHABLE
                orch.last_error = str(exc)
                log.debug("registration at %s: retry in %.1fs", orch.url, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, retry_max)
                continue
            except RegistrationRejected as exc:
                orch.state = OrchestratorState.REJECTED
                orch.last_error = str(exc)
                if orch.logged_rejection != str(exc):
                    orch.logged_rejection = str(exc)
                    if exc.bad_secret:
                        log.error(
                            "orchestrator %s refused the registration: invalid authorization "
                            "(ORCH_SECRET does not match its -orchSecret); retrying every %.0fs",
                            orch.url,
                            self.settings.register_rejected_retry_s,
                        )
                    else:
                        log.error(
                            "orchestrator %s refused the registration (%s); retrying every %.0fs",
                            orch.url,
                            exc,
                            self.settings.register_rejected_retry_s,
                        )
                await self._sleep_or_urgent(orch, self.settings.register_rejected_retry_s)
                continue
            if orch.state is not OrchestratorState.REGISTERED:
                log.info(
                    "registered %s at %s",
                    ", ".join(c.name for c in self.capabilities),
                    orch.url,
                )
            orch.state = OrchestratorState.REGISTERED
            orch.registrations += 1
            orch.last_error = ""
            orch.logged_rejection = ""
            backoff = min(FIRST_RETRY_S, retry_max)
            await self._wait_for_next_round(orch)

    async def _wait_for_next_round(self, orch: Orchestrator) -> None:
        """Return when it is time to register again: urgent, after an outage, or (idle only)
        every ``register_interval_s``."""
        assert self._http is not None
        loop = asyncio.get_running_loop()
        registered_at = loop.time()
        while True:
            if await self._sleep_or_urgent(orch, self.settings.orch_check_interval_s):
                log.info("re-registering at %s now (%s)", orch.url, orch.urgent_reason)
                return
            if not await probe(self._http, orch.url, verify_tls=self.settings.trickle_verify_tls):
                log.warning(
                    "orchestrator %s stopped answering; registering again once it is back",
                    orch.url,
                )
                orch.state = OrchestratorState.UNREACHABLE
                orch.last_error = "not answering"
                return
            if (
                not self.is_busy()
                and loop.time() - registered_at >= self.settings.register_interval_s
            ):
                return

    @staticmethod
    async def _sleep_or_urgent(orch: Orchestrator, seconds: float) -> bool:
        """Sleep ``seconds``; True if woken early by ``urgent``."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(orch.urgent.wait(), seconds)
            return True
        return False


async def register_once(
    settings: Settings, *, attempts: int = 1, retry_delay_s: float = 2.0
) -> list[str]:
    """Register every capability with every orchestrator once; return one line per failure.

    An unreachable orchestrator is tried ``attempts`` times; a refusal is final.
    """
    capabilities = build_capabilities(settings)
    if not capabilities:
        return ["no implemented capability to register (check CAPABILITY_NAMES)"]
    failures: list[str] = []
    async with aiohttp.ClientSession() as http:
        for orch_url in settings.orch_urls:
            for capability in capabilities:
                for attempt in range(1, attempts + 1):
                    try:
                        await register(
                            http,
                            orch_url,
                            settings.orch_secret,
                            capability,
                            verify_tls=settings.trickle_verify_tls,
                        )
                    except OrchestratorUnreachable as exc:
                        if attempt < attempts:
                            await asyncio.sleep(retry_delay_s)
                            continue
                        failures.append(
                            f"{orch_url}: {capability.name}: orchestrator unreachable ({exc})"
                        )
                    except RegistrationRejected as exc:
                        hint = (
                            " (ORCH_SECRET does not match the orchestrator's secret)"
                            if exc.bad_secret
                            else ""
                        )
                        failures.append(f"{orch_url}: {capability.name}: refused: {exc}{hint}")
                    else:
                        log.info(
                            "registered %s at %s as %s", capability.name, orch_url, capability.url
                        )
                    break
    return failures
