"""Everything the parent's HTTP handlers share, in one object stored on the aiohttp app."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from byoc.clips import ClipStore
from byoc.drain import Drain
from byoc.ice_servers import IceServers
from byoc.jobs import WorkerJobs
from byoc.metrics import RunnerMetrics
from byoc.peers import PeerSignalling
from byoc.registration import RegistrationService
from byoc.sessions import JobSlots, SessionTable
from byoc.settings import Settings
from byoc.streams import StreamManager
from byoc.supervisor import Supervisor

if TYPE_CHECKING:
    from byoc.live_runner.control_plane import LiveRunnerControlPlane


@dataclass
class Runtime:
    """The parent's shared state: settings, workers, sessions, jobs and streams."""

    settings: Settings
    supervisor: Supervisor
    sessions: SessionTable
    job_slots: JobSlots
    worker_jobs: WorkerJobs
    streams: StreamManager
    # Called when a request was refused for a wrong token: the orchestrator evicts us for it.
    token_rejected: list[Callable[[], None]] = field(default_factory=list)
    registration: RegistrationService | None = None
    live_runner: LiveRunnerControlPlane | None = None
    """The Live Runner control plane, when it runs."""
    clips: ClipStore = field(default_factory=ClipStore)
    """Input and output files of runner-API video sessions (closed with the runner)."""
    peers: PeerSignalling | None = None
    """WebRTC signalling towards the workers (None: no worker media path, no WHIP/WHEP)."""
    ice_servers: IceServers | None = None
    drain: Drain = field(default_factory=lambda: Drain(Settings.drain_timeout_s))
    """Whether the runner drains (refuses new work)."""
    metrics: RunnerMetrics = field(default_factory=RunnerMetrics)
    """Prometheus metrics (``GET /metrics``); collects from this runtime once ``watch``-ed."""

    def busy(self) -> bool:
        """A stream or a job is live (re-registering now would reset the orchestrator's load)."""
        return self.sessions.live_count() > 0 or self.job_slots.in_flight > 0


RUNTIME_KEY: web.AppKey[Runtime] = web.AppKey("runtime", Runtime)
