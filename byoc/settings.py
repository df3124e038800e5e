"""Runner settings: one declarative table of options, read from flags and the environment.

Every option has a flag and (almost always) an environment variable; flags override the
environment, which overrides the built-in default. Values are validated once, here, so a bad
value stops start-up with one clear line instead of failing later inside a worker.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import ipaddress
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ipc.logs import LOG_FORMATS
from ipc.messages import ENGINE_NAMES, X264_PRESETS, X264Preset
from ipc.pixfmt import MAX_DIMENSION

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
CONTROL_PLANES = ("byoc", "live-runner")
LIVE_RUNNER_PRICE_UNITS = ("hour", "720p", "fixed")
LIVE_RUNNER_PREFIX = "/live-runner"
"""Where the Live Runner app API is served (the default ``runner_url``'s path)."""
MAX_INFER_WORKERS = 64
ALL_CAPABILITIES = (
    "text-reversal",
    "comfystream-image",
    "comfystream-video",
    "whip-ingest",
    "whep-subscribe",
)
MIN_WHEP_BITRATE = 100_000
MAX_WHEP_BITRATE = 50_000_000


class SettingsError(ValueError):
    """A setting has a value the runner cannot start with."""


@dataclass(frozen=True)
class Settings:
    """Validated runner configuration (see ``OPTIONS`` for flags and env variables)."""

    host: str = "0.0.0.0"
    port: int = 8889
    workspace: Path = field(default_factory=Path.cwd)
    log_level: str = "INFO"
    log_format: str = "text"
    metrics_host: str = ""
    metrics_port: int = 0
    capacity: int = 4
    engine: str = "auto"
    infer_workers: int = 0
    """Infer worker processes; 0: ``auto`` (one per GPU, on a CPU-only host half the cores)."""
    max_jobs: int = 32
    max_body_bytes: int = 10 * 1024 * 1024
    max_image_side: int = 4096
    max_workflow_memory_mb: int = 4096
    header_timeout_s: float = 10.0
    min_body_rate: int = 1024
    # go-livepeer worker contract and orchestrator registration
    token: str = ""
    orch_urls: tuple[str, ...] = ()
    orch_secret: str = ""
    capability_url: str = ""
    capability_names: tuple[str, ...] = ()
    capability_description: str = "ComfyUI real-time video processing (comfystream-byoc)"
    price_per_unit: int = 0
    price_scaling: int = 1
    currency: str = "wei"
    register_interval_s: float = 30.0
    orch_check_interval_s: float = 5.0
    register_retry_max_s: float = 30.0
    register_rejected_retry_s: float = 60.0
    job_timeout_s: float = 120.0
    # control planes: BYOC (capability registration) and go-livepeer's Live Runner (heartbeats)
    control_planes: tuple[str, ...] = ("byoc", "live-runner")
    live_runner_orch_urls: tuple[str, ...] = ()
    live_runner_secret: str = ""
    """Secret for the first heartbeat (empty: ``orch_secret``)."""
    live_runner_url: str = ""
    """The URL orchestrators proxy app sessions to (empty: ``public_url`` + ``/live-runner``)."""
    live_runner_app: str = "comfystream"
    live_runner_price: float = 0.0
    live_runner_price_unit: str = "hour"
    live_runner_idle_timeout_s: float = 120.0
    # go-livepeer orchestrators serve self-signed certificates, hence off by default
    trickle_verify_tls: bool = False
    # latency and memory of the media path
    ring_slots: int = 4
    ring_max_width: int = 1920
    ring_max_height: int = 1080
    x264_preset: X264Preset = "superfast"
    segment_seconds: float = 1.0
    output_crf: int = 23
    output_bitrate: int = 0
    # development: the local orchestrator stand-in beside the runner
    with_orchestrator: bool = False
    orchestrator_port: int = 8890
    # sessions and streams
    session_retention_s: float = 600.0
    session_sweep_interval_s: float = 300.0
    stream_start_timeout_s: float = 10.0
    control_silence_timeout_s: float = 60.0
    events_interval_s: float = 10.0
    ingest_buffer_s: float = 2.5
    # supervisor
    heartbeat_interval_s: float = 1.0
    heartbeat_timeout_s: float = 5.0
    worker_start_timeout_s: float = 60.0
    restart_backoff_initial_s: float = 0.5
    restart_backoff_max_s: float = 10.0
    shutdown_timeout_s: float = 5.0
    # WebRTC (WHIP ingest, WHEP playback)
    webrtc_host_addresses: tuple[str, ...] = ()
    ice_servers: tuple[dict[str, Any], ...] = ()
    webrtc_public_ip: str = ""
    webrtc_ports: tuple[int, int] | None = None
    webrtc_idle_timeout_s: float = 10.0
    webrtc_early_frames: bool = True
    whep_bitrate: int = 1_500_000
    whep_keyframe_min_interval_s: float = 0.5
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    twilio_url: str = "https://api.twilio.com"
    # state that survives the process, and graceful drain
    state_dir: Path | None = Path(".comfystream-byoc")
    """Where the session table is kept (None: in memory only, nothing is resumed)."""
    drain_timeout_s: float = 60.0

    @property
    def public_url(self) -> str:
        """The URL orchestrators call: ``CAPABILITY_URL`` or one built from host and port."""
        return self.public_url_at(self.port)

    def public_url_at(self, port: int) -> str:
        """``public_url`` for the port the server actually bound (``--port 0`` picks one)."""
        if self.capability_url:
            return self.capability_url.rstrip("/")
        return self.local_url_at(port)

    def live_runner_url_at(self, port: int) -> str:
        """The ``runner_url`` sent in heartbeats: where the orchestrator proxies app requests."""
        if self.live_runner_url:
            return self.live_runner_url.rstrip("/")
        return self.public_url_at(port) + LIVE_RUNNER_PREFIX

    @property
    def byoc_enabled(self) -> bool:
        """BYOC registration runs: chosen in ``--control-planes`` and an orchestrator named."""
        return "byoc" in self.control_planes and bool(self.orch_urls)

    @property
    def live_runner_enabled(self) -> bool:
        """Live Runner heartbeats run: chosen in ``--control-planes`` and an orchestrator named."""
        return "live-runner" in self.control_planes and bool(self.live_runner_orch_urls)

    @property
    def live_runner_first_secret(self) -> str:
        """The secret of a first heartbeat: ``--live-runner-secret``, else ``--orch-secret``."""
        return self.live_runner_secret or self.orch_secret

    def local_url_at(self, port: int) -> str:
        """``http://host:port`` of this runner, a wildcard listen address shown as loopback."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{port}"

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied (validated again)."""
        return validate(dataclasses.replace(self, **changes))


@dataclass(frozen=True)
class Option:
    """One setting: its flag, env variable(s), parser and help text."""

    name: str
    flag: str
    env: tuple[str, ...]
    parse: Callable[[str], Any]
    help: str
    metavar: str | None = None
    switch: bool = False  # a flag without a value (``--with-orchestrator``); env takes 1/0


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _int(text: str) -> int:
    return int(text.strip(), 10)


def _worker_count(text: str) -> int:
    """``auto`` (0) or a positive count."""
    value = text.strip().lower()
    if value == "auto":
        return 0
    count = _int(value)
    if count < 1:
        raise ValueError("must be auto or at least 1")
    return count


def _float(text: str) -> float:
    return float(text.strip())


def _ice_servers(text: str) -> tuple[dict[str, Any], ...]:
    """A JSON list of ``{"urls": "stun:..." | [...], "username"?, "credential"?}``."""
    servers = json.loads(text) if text.strip() else []
    if not isinstance(servers, list):
        raise ValueError("must be a JSON list")
    out = []
    for server in servers:
        urls = server.get("urls") if isinstance(server, dict) else None
        urls = [urls] if isinstance(urls, str) else urls
        if not urls or not all(
            isinstance(u, str) and u.startswith(("stun:", "turn:", "turns:")) for u in urls
        ):
            raise ValueError('each server needs "urls": stun:, turn: or turns: URL(s)')
        entry: dict[str, Any] = {"urls": list(urls)}
        for key in ("username", "credential"):
            if server.get(key) is not None:
                entry[key] = str(server[key])
        out.append(entry)
    return tuple(out)


def _port_range(text: str) -> tuple[int, int] | None:
    if not text.strip():
        return None
    first, sep, last = text.strip().partition("-")
    if not sep:
        raise ValueError("expected FIRST-LAST, e.g. 40000-40100")
    return int(first), int(last)


def _upper(text: str) -> str:
    return text.strip().upper()


def _optional_path(text: str) -> Path | None:
    return Path(text.strip()) if text.strip() else None


def _lower(text: str) -> str:
    return text.strip().lower()


OPTIONS: tuple[Option, ...] = (
    Option("host", "--host", ("HOST",), str, "address to listen on"),
    Option("port", "--port", ("PORT",), _int, "HTTP port (1-65535)"),
    Option(
        "workspace",
        "--workspace",
        ("WORKSPACE",),
        Path,
        "ComfyUI workspace (models, custom_nodes); must exist",
    ),
    Option(
        "log_level", "--log-level", ("LOG_LEVEL",), _upper, "log level: " + ", ".join(LOG_LEVELS)
    ),
    Option(
        "log_format",
        "--log-format",
        ("LOG_FORMAT",),
        _lower,
        "log lines of every process: text, or json (one object a line)",
    ),
    Option(
        "metrics_host",
        "--metrics-host",
        ("METRICS_HOST",),
        str,
        "address of a separate /metrics listener (with --metrics-port; default: HOST)",
    ),
    Option(
        "metrics_port",
        "--metrics-port",
        ("METRICS_PORT",),
        _int,
        "serve /metrics on its own port, without the token (0: on --port, behind the token)",
    ),
    Option(
        "capacity",
        "--capacity",
        ("CAPABILITY_CAPACITY",),
        _int,
        "concurrent streams and stream-like sessions (one-shot jobs not counted)",
    ),
    Option(
        "engine",
        "--engine",
        ("COMFY_ENGINE",),
        str,
        "inference engine: auto (ComfyUI if importable), builtin, comfyui",
    ),
    Option(
        "infer_workers",
        "--infer-workers",
        ("INFER_WORKERS",),
        _worker_count,
        "infer worker processes: auto (one per GPU; without a GPU, half the CPU cores, at "
        "least 1) or a count",
    ),
    Option("max_jobs", "--max-jobs", ("MAX_JOBS",), _int, "one-shot jobs in flight before 503"),
    Option(
        "max_body_bytes",
        "--max-body-bytes",
        ("MAX_BODY_BYTES",),
        _int,
        "largest accepted request body in bytes (413 beyond)",
    ),
    Option(
        "max_image_side",
        "--max-image-side",
        ("MAX_IMAGE_SIDE",),
        _int,
        "largest width or height of a comfystream-image input or of an image a workflow makes",
    ),
    Option(
        "header_timeout_s",
        "--header-timeout",
        ("HEADER_TIMEOUT",),
        _float,
        "seconds a client has to send a request's headers (408 and closed beyond; 0: no limit)",
    ),
    Option(
        "min_body_rate",
        "--min-body-rate",
        ("MIN_BODY_RATE",),
        _int,
        "bytes a second a client must keep sending a request body at (closed below; 0: off)",
    ),
    Option(
        "max_workflow_memory_mb",
        "--max-workflow-memory-mb",
        ("MAX_WORKFLOW_MEMORY_MB",),
        _int,
        "largest image (width x height x batch, float32) one workflow node may allocate, in MiB",
    ),
    Option(
        "token",
        "--token",
        ("CAPABILITY_TOKEN",),
        str,
        "Bearer token orchestrators must send (empty: none required)",
    ),
    Option(
        "orch_urls",
        "--orch-url",
        ("ORCH_URL",),
        _csv,
        "orchestrator URL(s) to register with, comma separated",
    ),
    Option(
        "orch_secret",
        "--orch-secret",
        ("ORCH_SECRET",),
        str,
        "orchestrator secret sent when registering",
    ),
    Option(
        "control_planes",
        "--control-planes",
        ("CONTROL_PLANES",),
        _csv,
        "control planes to serve, comma separated: byoc, live-runner (each runs only when its "
        "orchestrator URL is set)",
    ),
    Option(
        "live_runner_orch_urls",
        "--live-runner-orch-url",
        ("LIVE_RUNNER_ORCH_URL",),
        _csv,
        "orchestrator URL(s) to send Live Runner heartbeats to, comma separated",
    ),
    Option(
        "live_runner_secret",
        "--live-runner-secret",
        ("LIVE_RUNNER_SECRET",),
        str,
        "secret of the first Live Runner heartbeat (default: ORCH_SECRET)",
    ),
    Option(
        "live_runner_url",
        "--live-runner-url",
        ("LIVE_RUNNER_URL",),
        str,
        "URL the orchestrator proxies Live Runner app sessions to (default: "
        "CAPABILITY_URL or http://HOST:PORT, plus /live-runner)",
    ),
    Option(
        "live_runner_app",
        "--live-runner-app",
        ("LIVE_RUNNER_APP",),
        str,
        "app name announced in Live Runner heartbeats",
    ),
    Option(
        "live_runner_price",
        "--live-runner-price",
        ("LIVE_RUNNER_PRICE",),
        _float,
        "Live Runner price in USD per --live-runner-price-unit (0: free; on-chain orchestrators "
        "need one)",
    ),
    Option(
        "live_runner_price_unit",
        "--live-runner-price-unit",
        ("LIVE_RUNNER_PRICE_UNIT",),
        _lower,
        "unit of --live-runner-price: hour, 720p (per hour of 1280x720 at 30 fps) or fixed "
        "(per session)",
    ),
    Option(
        "live_runner_idle_timeout_s",
        "--live-runner-idle-timeout",
        ("LIVE_RUNNER_IDLE_TIMEOUT",),
        _float,
        "seconds a Live Runner session may pass without a request or media before the runner "
        "stops and releases it",
    ),
    Option(
        "capability_url",
        "--capability-url",
        ("CAPABILITY_URL",),
        str,
        "URL orchestrators call (default http://HOST:PORT)",
    ),
    Option(
        "capability_names",
        "--capability-names",
        ("CAPABILITY_NAMES", "CAPABILITY_NAME"),
        _csv,
        "capabilities to register, comma separated (default: all implemented)",
    ),
    Option(
        "capability_description",
        "--capability-description",
        ("CAPABILITY_DESCRIPTION",),
        str,
        "description sent when registering",
    ),
    Option(
        "price_per_unit",
        "--price-per-unit",
        ("CAPABILITY_PRICE_PER_UNIT",),
        _int,
        "price numerator per unit (integer)",
    ),
    Option(
        "price_scaling",
        "--price-scaling",
        ("CAPABILITY_PRICE_SCALING",),
        _int,
        "price denominator (integer >= 1)",
    ),
    Option(
        "currency",
        "--currency",
        ("CAPABILITY_CURRENCY",),
        str,
        "price currency (wei, eth, or one the orchestrator has a feed for)",
    ),
    Option(
        "register_interval_s",
        "--register-interval",
        ("REGISTER_INTERVAL",),
        _float,
        "seconds between re-registrations while idle",
    ),
    Option(
        "orch_check_interval_s",
        "--orch-check-interval",
        ("ORCH_CHECK_INTERVAL",),
        _float,
        "seconds between checks that a registered orchestrator still answers (busy or idle)",
    ),
    Option(
        "register_retry_max_s",
        "--register-retry-max",
        ("REGISTER_RETRY_MAX",),
        _float,
        "longest backoff between registration retries, seconds",
    ),
    Option(
        "register_rejected_retry_s",
        "--register-rejected-retry",
        ("REGISTER_REJECTED_RETRY",),
        _float,
        "seconds between registration attempts an orchestrator refused (e.g. wrong secret)",
    ),
    Option(
        "job_timeout_s",
        "--job-timeout",
        ("JOB_TIMEOUT",),
        _float,
        "longest a worker job may take before 504 (a Livepeer header's timeout_seconds may lower it)",
    ),
    Option(
        "ring_slots",
        "--ring-slots",
        ("RING_SLOTS",),
        _int,
        "frames a stream's ring holds (2-64): more absorbs bursts, fewer keeps latency down",
    ),
    Option(
        "ring_max_width",
        "--ring-max-width",
        ("RING_MAX_WIDTH",),
        _int,
        "width of the largest frame a ring holds without a resize (sets shared memory per stream)",
    ),
    Option(
        "ring_max_height",
        "--ring-max-height",
        ("RING_MAX_HEIGHT",),
        _int,
        "height of the largest frame a ring holds without a resize",
    ),
    Option(
        "x264_preset",
        "--x264-preset",
        ("X264_PRESET",),
        str,
        "libx264 preset of the output: " + ", ".join(X264_PRESETS),
    ),
    Option(
        "segment_seconds",
        "--segment-seconds",
        ("SEGMENT_SECONDS",),
        _float,
        "length of an output trickle segment, seconds; each opens with a keyframe (the GOP)",
    ),
    Option(
        "output_crf",
        "--output-crf",
        ("OUTPUT_CRF",),
        _int,
        "constant quality of the output video (0-51, lower is better) when no bitrate is set",
    ),
    Option(
        "output_bitrate",
        "--output-bitrate",
        ("OUTPUT_BITRATE",),
        _int,
        "target bits per second of the trickle and MP4 output video (VBV-capped average,"
        " budgeted for 30 fps: a 60 fps stream gets about twice it); 0: constant quality"
        " (--output-crf)",
    ),
    Option(
        "trickle_verify_tls",
        "--trickle-verify-tls",
        ("TRICKLE_VERIFY_TLS",),
        _bool,
        "verify orchestrators' TLS certificates (trickle channels and registration); off by "
        "default because go-livepeer orchestrators serve self-signed ones",
        switch=True,
    ),
    Option(
        "with_orchestrator",
        "--with-orchestrator",
        ("WITH_ORCHESTRATOR",),
        _bool,
        "also run the local orchestrator stand-in and register with it (development)",
        switch=True,
    ),
    Option(
        "orchestrator_port",
        "--orchestrator-port",
        ("ORCHESTRATOR_PORT",),
        _int,
        "port of the local orchestrator stand-in started by --with-orchestrator",
    ),
    Option(
        "session_retention_s",
        "--session-retention",
        ("SESSION_RETENTION",),
        _float,
        "seconds an ended session stays readable",
    ),
    Option(
        "session_sweep_interval_s",
        "--session-sweep-interval",
        ("SESSION_SWEEP_INTERVAL",),
        _float,
        "seconds between session sweeps",
    ),
    Option(
        "stream_start_timeout_s",
        "--stream-start-timeout",
        ("STREAM_START_TIMEOUT",),
        _float,
        "seconds /stream/start may take before answering",
    ),
    Option(
        "control_silence_timeout_s",
        "--control-silence-timeout",
        ("CONTROL_SILENCE_TIMEOUT",),
        _float,
        "seconds of control-channel silence that end a stream",
    ),
    Option(
        "events_interval_s",
        "--events-interval",
        ("EVENTS_INTERVAL",),
        _float,
        "seconds between status events on a stream's events channel",
    ),
    Option(
        "ingest_buffer_s",
        "--ingest-buffer",
        ("INGEST_BUFFER",),
        _float,
        "seconds of live input held to absorb bursts, released at the input's cadence (0: off)",
    ),
    Option(
        "heartbeat_interval_s",
        "--heartbeat-interval",
        ("HEARTBEAT_INTERVAL",),
        _float,
        "seconds between worker heartbeats",
    ),
    Option(
        "heartbeat_timeout_s",
        "--heartbeat-timeout",
        ("HEARTBEAT_TIMEOUT",),
        _float,
        "seconds without a heartbeat before a worker counts as hung",
    ),
    Option(
        "worker_start_timeout_s",
        "--worker-start-timeout",
        ("WORKER_START_TIMEOUT",),
        _float,
        "seconds a worker may take to report ready",
    ),
    Option(
        "restart_backoff_initial_s",
        "--restart-backoff",
        ("RESTART_BACKOFF",),
        _float,
        "first delay before restarting a dead worker, seconds (doubles)",
    ),
    Option(
        "restart_backoff_max_s",
        "--restart-backoff-max",
        ("RESTART_BACKOFF_MAX",),
        _float,
        "longest delay between worker restarts, seconds",
    ),
    Option(
        "shutdown_timeout_s",
        "--shutdown-timeout",
        ("SHUTDOWN_TIMEOUT",),
        _float,
        "seconds workers get to stop before they are killed",
    ),
    Option(
        "webrtc_host_addresses",
        "--webrtc-host-addresses",
        ("WEBRTC_HOST_ADDRESSES",),
        _csv,
        "local addresses offered as WebRTC host candidates, comma separated "
        "(default: every address found; 127.0.0.1 on a loopback-only host)",
    ),
    Option(
        "ice_servers",
        "--ice-servers",
        ("ICE_SERVERS",),
        _ice_servers,
        'STUN/TURN servers as a JSON list: [{"urls": ["stun:host:3478"]}, '
        '{"urls": "turn:host", "username": "u", "credential": "p"}]',
    ),
    Option(
        "webrtc_public_ip",
        "--webrtc-public-ip",
        ("WEBRTC_PUBLIC_IP",),
        str,
        "public IP of a 1:1 NAT, advertised beside each host candidate",
    ),
    Option(
        "webrtc_ports",
        "--webrtc-ports",
        ("WEBRTC_PORTS",),
        _port_range,
        "UDP port range for WebRTC, FIRST-LAST (split between ingest and egress; default: any)",
    ),
    Option(
        "webrtc_idle_timeout_s",
        "--webrtc-idle-timeout",
        ("WEBRTC_IDLE_TIMEOUT",),
        _float,
        "seconds without media from a WHIP publisher before its session ends",
    ),
    Option(
        "webrtc_early_frames",
        "--webrtc-early-frames",
        ("WEBRTC_EARLY_FRAMES",),
        _bool,
        "decode a WHIP video frame as soon as its last packet is in (on), or when the next "
        "frame starts, as aiortc does (off)",
    ),
    Option(
        "whep_bitrate",
        "--whep-bitrate",
        ("WHEP_BITRATE",),
        _int,
        "bits per second of a session's WHEP video (one encode per codec shared by its viewers)",
    ),
    Option(
        "whep_keyframe_min_interval_s",
        "--whep-keyframe-min-interval",
        ("WHEP_KEYFRAME_MIN_INTERVAL",),
        _float,
        "shortest time between two keyframes forced by WHEP viewers (PLI/FIR, joins), seconds",
    ),
    Option(
        "twilio_account_sid",
        "--twilio-account-sid",
        ("TWILIO_ACCOUNT_SID",),
        str,
        "Twilio account: TURN servers are fetched from its token API (with the auth token)",
    ),
    Option(
        "twilio_auth_token",
        "--twilio-auth-token",
        ("TWILIO_AUTH_TOKEN",),
        str,
        "Twilio auth token (see --twilio-account-sid)",
    ),
    Option(
        "state_dir",
        "--state-dir",
        ("STATE_DIR",),
        _optional_path,
        "directory of the session state (SQLite), kept across restarts so live streams resume; "
        "one runner per directory; empty: in memory only",
    ),
    Option(
        "drain_timeout_s",
        "--drain-timeout",
        ("DRAIN_TIMEOUT",),
        _float,
        "seconds a drain (SIGTERM, POST /admin/drain) lets live sessions run before stopping them",
    ),
)


def add_arguments(parser: argparse.ArgumentParser, options: Sequence[Option] = OPTIONS) -> None:
    """Add one flag per option; the help shows its env variable and default."""
    defaults = Settings()
    for option in options:
        default = getattr(defaults, option.name)
        if option.name == "workspace":
            default = "current directory"
        shown = ",".join(default) if isinstance(default, tuple) else default
        env = " or ".join(option.env)
        if option.switch:
            parser.add_argument(
                option.flag,
                dest=option.name,
                default=None,
                action="store_const",
                const="true",
                help=f"{option.help} [env {env}; default {'on' if default else 'off'}]",
            )
            continue
        parser.add_argument(
            option.flag,
            dest=option.name,
            default=None,
            metavar=option.metavar or option.name.upper().removesuffix("_S"),
            help=f"{option.help} [env {env}; default {shown!s}]",
        )


def load(
    flags: Mapping[str, str | None],
    environ: Mapping[str, str] | None = None,
    options: Sequence[Option] = OPTIONS,
) -> Settings:
    """Build validated settings from flag values (strings or None) over the environment."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for option in options:
        raw = flags.get(option.name)
        source = option.flag
        if raw is None:
            for env in option.env:
                if env in environ:
                    raw, source = environ[env], env
                    break
        if raw is None:
            continue
        try:
            values[option.name] = option.parse(raw)
        except ValueError as exc:
            raise SettingsError(f"{source}: invalid value {raw!r} ({exc})") from None
    return validate(Settings(**values))


def validate(settings: Settings) -> Settings:
    """Check ranges and relations between settings; raise ``SettingsError`` on the first problem."""
    s = settings
    if not 1 <= s.port <= 65535:
        raise SettingsError(f"--port must be 1-65535, got {s.port}")
    if not 1 <= s.orchestrator_port <= 65535:
        raise SettingsError(f"--orchestrator-port must be 1-65535, got {s.orchestrator_port}")
    if s.with_orchestrator and s.orchestrator_port == s.port:
        raise SettingsError("--orchestrator-port must differ from --port")
    if s.capacity < 1:
        raise SettingsError(f"--capacity must be at least 1, got {s.capacity}")
    if not 0 <= s.infer_workers <= MAX_INFER_WORKERS:
        raise SettingsError(
            f"--infer-workers must be auto or 1-{MAX_INFER_WORKERS}, got {s.infer_workers}"
        )
    if s.max_jobs < 1:
        raise SettingsError(f"--max-jobs must be at least 1, got {s.max_jobs}")
    if s.max_body_bytes < 1024:
        raise SettingsError(f"--max-body-bytes must be at least 1024, got {s.max_body_bytes}")
    if s.header_timeout_s < 0 or s.min_body_rate < 0:
        raise SettingsError("--header-timeout and --min-body-rate must not be negative")
    if s.max_workflow_memory_mb < 1:
        raise SettingsError(
            f"--max-workflow-memory-mb must be at least 1, got {s.max_workflow_memory_mb}"
        )
    if s.max_image_side < 1:
        raise SettingsError(f"--max-image-side must be at least 1, got {s.max_image_side}")
    if not 2 <= s.ring_slots <= 64:
        raise SettingsError(f"--ring-slots must be 2-64, got {s.ring_slots}")
    for flag, side in (
        ("--ring-max-width", s.ring_max_width),
        ("--ring-max-height", s.ring_max_height),
    ):
        if not 16 <= side <= MAX_DIMENSION:
            raise SettingsError(f"{flag} must be 16-{MAX_DIMENSION}, got {side}")
    if s.x264_preset not in X264_PRESETS:
        raise SettingsError(
            f"--x264-preset must be one of {', '.join(X264_PRESETS)}, got {s.x264_preset!r}"
        )
    if not 0 <= s.output_crf <= 51:
        raise SettingsError(f"--output-crf must be 0-51, got {s.output_crf}")
    if s.output_bitrate < 0:
        raise SettingsError(f"--output-bitrate must be >= 0, got {s.output_bitrate}")
    if not MIN_WHEP_BITRATE <= s.whep_bitrate <= MAX_WHEP_BITRATE:
        raise SettingsError(
            f"--whep-bitrate must be {MIN_WHEP_BITRATE}-{MAX_WHEP_BITRATE}, got {s.whep_bitrate}"
        )
    if s.log_level not in LOG_LEVELS:
        raise SettingsError(
            f"--log-level must be one of {', '.join(LOG_LEVELS)}, got {s.log_level!r}"
        )
    if s.log_format not in LOG_FORMATS:
        raise SettingsError(
            f"--log-format must be one of {', '.join(LOG_FORMATS)}, got {s.log_format!r}"
        )
    if s.metrics_port and not 1 <= s.metrics_port <= 65535:
        raise SettingsError(f"--metrics-port must be 0 or 1-65535, got {s.metrics_port}")
    taken = (s.port, s.orchestrator_port) if s.with_orchestrator else (s.port,)
    if s.metrics_port and s.metrics_port in taken:
        raise SettingsError("--metrics-port must differ from --port and --orchestrator-port")
    if s.metrics_host and not s.metrics_port:
        raise SettingsError("--metrics-host needs --metrics-port")
    if s.engine not in ENGINE_NAMES:
        raise SettingsError(f"--engine must be one of {', '.join(ENGINE_NAMES)}, got {s.engine!r}")
    if s.engine == "comfyui" and importlib.util.find_spec("comfy") is None:
        # Found without importing it: the parent never loads torch.
        raise SettingsError(
            "--engine comfyui: ComfyUI is not installed in this environment "
            "(install the comfyui extra, or use --engine auto/builtin)"
        )
    if not s.workspace.is_dir():
        raise SettingsError(
            f"--workspace {str(s.workspace)!r} does not exist or is not a directory"
        )
    unknown = [name for name in s.capability_names if name not in ALL_CAPABILITIES]
    if unknown:
        raise SettingsError(
            f"--capability-names: unknown capability {', '.join(unknown)} (known: {', '.join(ALL_CAPABILITIES)})"
        )
    if s.price_per_unit < 0:
        raise SettingsError(f"--price-per-unit must be >= 0, got {s.price_per_unit}")
    if s.price_scaling < 1:
        raise SettingsError(f"--price-scaling must be >= 1, got {s.price_scaling}")
    unknown_planes = [p for p in s.control_planes if p not in CONTROL_PLANES]
    if unknown_planes or not s.control_planes:
        raise SettingsError(
            f"--control-planes: one or more of {', '.join(CONTROL_PLANES)}, got "
            f"{','.join(s.control_planes) or '(none)'}"
        )
    if s.live_runner_price < 0:
        raise SettingsError(f"--live-runner-price must be >= 0, got {s.live_runner_price}")
    if s.live_runner_price_unit not in LIVE_RUNNER_PRICE_UNITS:
        raise SettingsError(
            f"--live-runner-price-unit must be one of {', '.join(LIVE_RUNNER_PRICE_UNITS)}, "
            f"got {s.live_runner_price_unit!r}"
        )
    if not s.live_runner_app.strip():
        raise SettingsError("--live-runner-app must not be empty")
    if s.live_runner_enabled and not s.live_runner_first_secret:
        raise SettingsError("Live Runner heartbeats need --live-runner-secret or --orch-secret")
    for url in (
        *s.orch_urls,
        *s.live_runner_orch_urls,
        *([s.capability_url] if s.capability_url else []),
        *([s.live_runner_url] if s.live_runner_url else []),
    ):
        if not url.startswith(("http://", "https://")):
            raise SettingsError(f"URL must start with http:// or https://, got {url!r}")
    for name in (
        "register_interval_s",
        "orch_check_interval_s",
        "register_retry_max_s",
        "register_rejected_retry_s",
        "job_timeout_s",
        "session_retention_s",
        "session_sweep_interval_s",
        "stream_start_timeout_s",
        "control_silence_timeout_s",
        "events_interval_s",
        "segment_seconds",
        "heartbeat_interval_s",
        "heartbeat_timeout_s",
        "worker_start_timeout_s",
        "restart_backoff_initial_s",
        "restart_backoff_max_s",
        "shutdown_timeout_s",
        "webrtc_idle_timeout_s",
        "whep_keyframe_min_interval_s",
        "drain_timeout_s",
        "live_runner_idle_timeout_s",
    ):
        if getattr(s, name) <= 0:
            flag = next(o.flag for o in OPTIONS if o.name == name)
            raise SettingsError(f"{flag} must be > 0, got {getattr(s, name)}")
    for address in (
        *s.webrtc_host_addresses,
        *([s.webrtc_public_ip] if s.webrtc_public_ip else []),
    ):
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise SettingsError(f"not an IP address: {address!r}") from None
    if s.webrtc_ports is not None:
        first, last = s.webrtc_ports
        if not (1024 <= first and last <= 65535 and last - first >= 1):
            raise SettingsError(
                f"--webrtc-ports must be FIRST-LAST within 1024-65535 with at least 2 ports, got {first}-{last}"
            )
    if not 0 <= s.ingest_buffer_s <= 60:
        raise SettingsError(f"--ingest-buffer must be within 0..60 s, got {s.ingest_buffer_s}")
    if s.heartbeat_timeout_s <= s.heartbeat_interval_s:
        raise SettingsError("--heartbeat-timeout must be longer than --heartbeat-interval")
    state_dir = s.state_dir.resolve() if s.state_dir is not None else None
    if state_dir is not None and state_dir.exists() and not state_dir.is_dir():
        raise SettingsError(f"--state-dir {str(state_dir)!r} exists and is not a directory")
    return dataclasses.replace(s, workspace=s.workspace.resolve(), state_dir=state_dir)
