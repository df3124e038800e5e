"""The stand-in's Live Runner registry: go-livepeer's dynamic runners (``ai/runner/live_runner.go``),
off-chain.

- A heartbeat with an unknown ``runner_id`` registers (the orchestrator secret is required: 404
  when none is configured, 401 when the header differs); it answers a fresh heartbeat secret and
  a fresh orchestrator-to-runner (O2R) trickle channel, once. A known ``runner_id`` must present
  its heartbeat secret (401 otherwise) and gets neither again; an expired runner not yet swept
  gets 404 ``runner not found``. The body is checked before the secret (400 wins over 401).
- A runner whose last good heartbeat is older than the TTL is invisible at once to every lookup;
  a sweep every heartbeat interval removes it: its O2R channel is closed first, then its
  sessions are released (so no ``released`` reaches it) and their channels closed.
- Sessions: ``session_`` + 8 base32 characters, at most ``capacity`` per runner (503 beyond),
  a token HMAC(seed, ``session:{id}``) per session, reported oldest first in every heartbeat
  answer. Reserving and releasing queue ``reserved``/``released`` on the O2R channel (32
  messages, overflow dropped), which also carries ``{"keep":"alive"}`` every keep-alive interval.
- Channels a session creates live on the stand-in's trickle server as ``{session}-{name}`` and
  close when the session is released.

Everything is in memory: :meth:`LiveRunnerRegistry.forget_all` is what an orchestrator restart
does to it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from byoc.livepeer.standin.orchestrator.gohttp import go_duration
from byoc.livepeer.standin.trickle_server import TrickleServer
from byoc.livepeer.trickle.constants import CONTENT_TYPE_JSON, CONTENT_TYPE_OCTET

log = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_INTERVAL_S = 5.0
DEFAULT_HEARTBEAT_TTL_S = 20.0
DEFAULT_O2R_KEEPALIVE_INTERVAL_S = 10.0
O2R_QUEUE_SIZE = 32
O2R_KEEPALIVE = b'{"keep":"alive"}'
MODE_PERSISTENT = "persistent"
MODE_SINGLE_SHOT = "single-shot"
MAX_METADATA_BYTES = 1024
_ID_RANDOM_BYTES = 5
_PROXY_ID_RANDOM_BYTES = 16
_CHANNEL_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


class LiveRunnerError(Exception):
    """A refusal with go-livepeer's status code and message (``RunnerError``)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode().rstrip("=").lower()


def random_id(n_bytes: int = _ID_RANDOM_BYTES) -> str:
    """go-livepeer's ``randomStr``: lowercase unpadded base32 of random bytes."""
    return _b32(secrets.token_bytes(n_bytes))


def derive_secret(seed: bytes, label: str) -> str:
    """Lowercase unpadded base32 of HMAC-SHA256(seed, label)."""
    return _b32(hmac.new(seed, label.encode(), hashlib.sha256).digest())


def valid_secret(got: str, want: str) -> bool:
    return hmac.compare_digest(got.encode(), want.encode())


def trickle_channel_json(
    name: str, channel_name: str, url: str, internal_url: str, mime_type: str
) -> dict[str, str]:
    """``LiveRunnerTrickleChannel`` as go-livepeer marshals it (``internal_url`` omitted if empty)."""
    out = {"name": name, "channel_name": channel_name, "url": url}
    if internal_url:
        out["internal_url"] = internal_url
    out["mime_type"] = mime_type
    return out


@dataclass
class HeartbeatRequest:
    """``LiveRunnerHeartbeatRequest`` after go-livepeer's normalisation."""

    runner_id: str
    runner_url: str
    app: str
    capacity: int = 1
    mode: str = MODE_PERSISTENT
    status: str = ""
    label: str = ""
    version: str = ""
    metadata: str = ""
    proxy: bool = False
    gpu: dict[str, Any] | None = None
    price_info: dict[str, Any] = field(default_factory=dict)
    session_ids: list[str] = field(default_factory=list)


@dataclass
class RunnerSession:
    id: str
    created_at: float
    channels: dict[str, dict[str, str]] = field(default_factory=dict)
    proxies: dict[str, str] = field(default_factory=dict)  # proxy id -> target URL


@dataclass
class O2RChannel:
    """The orchestrator-to-runner channel: one JSON message per trickle segment."""

    json: dict[str, str]
    queue: asyncio.Queue[bytes]
    writer: asyncio.Task[None] | None = None

    @property
    def channel_name(self) -> str:
        return self.json["channel_name"]


@dataclass
class LiveRunner:
    seed: bytes
    heartbeat_secret: str
    request: HeartbeatRequest
    last_heartbeat: float
    o2r: O2RChannel | None = None
    removed: bool = False
    sessions: dict[str, RunnerSession] = field(default_factory=dict)
    heartbeats: int = 0
    """Good heartbeats (registration included), for tests."""

    @property
    def runner_id(self) -> str:
        return self.request.runner_id

    def session_token(self, session_id: str) -> str:
        return derive_secret(self.seed, "session:" + session_id)

    def session_ids(self) -> list[str]:
        """Active sessions, oldest first (ties by id)."""
        ordered = sorted(self.sessions.values(), key=lambda s: (s.created_at, s.id))
        return [s.id for s in ordered]

    @property
    def ready(self) -> bool:
        return self.request.status in ("", "ready")


def normalize_heartbeat(runner_id: str, body: dict[str, Any]) -> HeartbeatRequest:
    """Decode and check a heartbeat body as go-livepeer does (off-chain: price unchecked).

    Raises ``LiveRunnerError(400, ...)`` with go-livepeer's messages.
    """
    strings: dict[str, str] = {}
    for key in ("runner_id", "label", "runner_url", "version", "status", "mode", "app", "metadata"):
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            raise LiveRunnerError(400, _go_type_error(value, key, "string"))
        strings[key] = value or ""
    capacity = body.get("capacity")
    if capacity is None:
        capacity = 0
    if isinstance(capacity, bool) or not isinstance(capacity, int):
        raise LiveRunnerError(400, _go_type_error(capacity, "capacity", "int"))
    session_ids = body.get("session_ids") or []
    if not isinstance(session_ids, list) or not all(isinstance(s, str) for s in session_ids):
        raise LiveRunnerError(400, _go_type_error(session_ids, "session_ids", "[]string"))
    price_info = body.get("price_info") or {}
    if not isinstance(price_info, dict):
        raise LiveRunnerError(400, _go_type_error(price_info, "price_info", "LiveRunnerPriceInfo"))
    gpu = _decode_gpu(body.get("gpu"))
    proxy = body.get("proxy")
    if proxy is not None and not isinstance(proxy, bool):
        raise LiveRunnerError(400, _go_type_error(proxy, "proxy", "bool"))

    url = urlsplit(strings["runner_url"])
    if url.scheme not in ("http", "https") or not url.netloc:
        raise LiveRunnerError(400, "invalid runner_url")
    app = strings["app"]
    if not app or app != app.strip():
        raise LiveRunnerError(400, "app must be trimmed")
    status = strings["status"]
    if status != status.strip().lower():
        raise LiveRunnerError(400, "status must be lowercase and trimmed")
    mode = strings["mode"] or MODE_PERSISTENT
    if mode == "single_shot":
        mode = MODE_SINGLE_SHOT
    if mode not in (MODE_PERSISTENT, MODE_SINGLE_SHOT):
        raise LiveRunnerError(400, f'mode must be "{MODE_PERSISTENT}" or "{MODE_SINGLE_SHOT}"')
    if capacity < 0:
        raise LiveRunnerError(400, "capacity must be >= 0")
    metadata = strings["metadata"]
    if len(metadata.encode("utf-8", "surrogatepass")) > MAX_METADATA_BYTES:
        raise LiveRunnerError(400, f"metadata must be at most {MAX_METADATA_BYTES} bytes")
    if "\ufffd" in metadata or any(0xD800 <= ord(c) <= 0xDFFF for c in metadata):
        raise LiveRunnerError(400, "metadata must be valid UTF-8")
    return HeartbeatRequest(
        runner_id=runner_id,
        runner_url=strings["runner_url"],
        app=app,
        capacity=capacity or 1,
        mode=mode,
        status=status,
        label=strings["label"],
        version=strings["version"],
        metadata=metadata,
        proxy=bool(proxy),
        gpu=gpu,
        price_info=price_info,
        session_ids=list(session_ids),
    )


def _decode_gpu(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return {"id": str(value)}  # a device index: the stand-in has no GPU to look it up on
    if not isinstance(value, dict):
        raise LiveRunnerError(400, _go_type_error(value, "gpu", "LiveRunnerGPU"))
    gpu: dict[str, Any] = {}
    for key in ("id", "name"):
        item = value.get(key)
        if item is not None and not isinstance(item, str):
            raise LiveRunnerError(400, _go_type_error(item, key, "string"))
        if item:
            gpu[key] = item
    vram = value.get("vram_mb")
    if vram is not None and (isinstance(vram, bool) or not isinstance(vram, int)):
        raise LiveRunnerError(400, _go_type_error(vram, "vram_mb", "int"))
    if vram:
        gpu["vram_mb"] = vram
    return gpu


def _go_type_error(value: Any, key: str, go_type: str) -> str:
    return (
        f"json: cannot unmarshal {type(value).__name__} into Go struct field "
        f"LiveRunnerHeartbeatRequest.{key} of type {go_type}"
    )


class LiveRunnerRegistry:
    """Dynamic live runners by id, their sessions, and the channels those sessions own."""

    def __init__(
        self,
        trickle: TrickleServer,
        *,
        secret: str = "",
        heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S,
        heartbeat_ttl_s: float = DEFAULT_HEARTBEAT_TTL_S,
        o2r_keepalive_interval_s: float = DEFAULT_O2R_KEEPALIVE_INTERVAL_S,
    ) -> None:
        self.trickle = trickle
        self.secret = secret
        self.heartbeat_interval_s = heartbeat_interval_s
        self.heartbeat_ttl_s = heartbeat_ttl_s
        self.o2r_keepalive_interval_s = o2r_keepalive_interval_s
        self.runners: dict[str, LiveRunner] = {}
        self.base_url = ""
        """The orchestrator's URL (service URI and runner-facing URI are one here)."""
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def trickle_base(self) -> str:
        return self.base_url + self.trickle.prefix

    # ---- lifecycle --------------------------------------------------------------------------

    def heartbeat(self, body: dict[str, Any], auth: str) -> dict[str, Any]:
        """``POST /runners/heartbeat``: register or refresh a runner; the answer's JSON."""
        runner_id = body.get("runner_id")
        runner_id = runner_id.strip() if isinstance(runner_id, str) else ""
        if not runner_id:
            runner_id = "runner_" + random_id()
        request = normalize_heartbeat(runner_id, body)
        runner = self.runners.get(runner_id)
        if runner is None:
            return self._register(request, auth)
        if runner.removed or self._expired(runner):
            raise LiveRunnerError(404, "runner not found")
        if not valid_secret(auth, runner.heartbeat_secret):
            raise LiveRunnerError(401, "invalid heartbeat authorization")
        runner.request = request
        runner.last_heartbeat = time.monotonic()
        runner.heartbeats += 1
        return self._heartbeat_answer(runner, first=False)

    def _register(self, request: HeartbeatRequest, auth: str) -> dict[str, Any]:
        if not self.secret:
            raise LiveRunnerError(404, "dynamic live runner registration is disabled")
        if not valid_secret(auth, self.secret):
            raise LiveRunnerError(401, "invalid registration authorization")
        seed = secrets.token_bytes(32)
        runner = LiveRunner(
            seed=seed,
            heartbeat_secret=derive_secret(seed, "heartbeat"),
            request=request,
            last_heartbeat=time.monotonic(),
            heartbeats=1,
        )
        runner.o2r = self._open_o2r(runner)
        self.runners[request.runner_id] = runner
        log.info(
            "live runner %s registered: app %s at %s (capacity %d)",
            request.runner_id,
            request.app,
            request.runner_url,
            request.capacity,
        )
        return self._heartbeat_answer(runner, first=True)

    def _heartbeat_answer(self, runner: LiveRunner, *, first: bool) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "runner_id": runner.runner_id,
            "orchestrator": self.base_url,
            "heartbeat_interval": go_duration(self.heartbeat_interval_s),
            "heartbeat_ttl": go_duration(self.heartbeat_ttl_s),
        }
        if first:
            answer["heartbeat_secret"] = runner.heartbeat_secret
            assert runner.o2r is not None
            answer["o2r"] = dict(runner.o2r.json)
        answer["session_ids"] = runner.session_ids()
        return answer

    def unregister(self, runner_id: str, auth: str) -> None:
        """``POST /runners/{id}/unregister`` with the heartbeat secret."""
        runner = self.runners.get(runner_id)
        if runner is None or runner.removed or self._expired(runner):
            raise LiveRunnerError(404, "runner not found")
        if not valid_secret(auth, runner.heartbeat_secret):
            raise LiveRunnerError(401, "invalid authorization")
        self._remove(runner, "unregister")

    def _expired(self, runner: LiveRunner, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return now - runner.last_heartbeat > self.heartbeat_ttl_s

    def lookup(self, runner_id: str) -> LiveRunner:
        """A live (registered, not expired) runner, else 404 ``runner not found``."""
        runner = self.runners.get(runner_id)
        if runner is None or runner.removed or self._expired(runner):
            raise LiveRunnerError(404, "runner not found")
        return runner

    def ready_runner(self, runner_id: str) -> LiveRunner:
        runner = self.lookup(runner_id)
        if not runner.ready:
            raise LiveRunnerError(404, "runner not found")
        return runner

    def sweep_expired(self) -> list[str]:
        """Remove every runner past its TTL; return their ids."""
        now = time.monotonic()
        expired = [r for r in self.runners.values() if not r.removed and self._expired(r, now)]
        for runner in expired:
            self._remove(runner, "heartbeat timeout")
        return [r.runner_id for r in expired]

    def _remove(self, runner: LiveRunner, reason: str) -> None:
        runner.removed = True
        log.info("live runner %s deregistered: %s", runner.runner_id, reason)
        self._close_o2r(runner)  # first: the releases below reach nobody, as in go-livepeer
        for session_id in list(runner.sessions):
            self._release_locked(runner, session_id)
        if self.runners.get(runner.runner_id) is runner:
            del self.runners[runner.runner_id]

    def forget_all(self) -> None:
        """What an orchestrator restart does: every runner, session and channel gone, nothing
        announced (the process that would announce it died)."""
        for runner in list(self.runners.values()):
            runner.removed = True
            self._close_o2r(runner)
            for session in runner.sessions.values():
                self._close_session_channels(session)
            runner.sessions.clear()
        self.runners.clear()
        log.info("live runner registry forgotten (orchestrator restart)")

    # ---- sessions ---------------------------------------------------------------------------

    def reserve_session(self, runner_id: str, session_id: str = "") -> tuple[str, LiveRunner]:
        """Reserve a session on a ready runner (503 when full, 409 for a duplicate id)."""
        runner = self.ready_runner(runner_id)
        if len(runner.sessions) >= runner.request.capacity:
            raise LiveRunnerError(503, "no capacity available for runner")
        if session_id:
            if session_id in runner.sessions:
                raise LiveRunnerError(409, "session already exists")
        else:
            session_id = "session_" + random_id()
            while session_id in runner.sessions:
                session_id = "session_" + random_id()
        runner.sessions[session_id] = RunnerSession(session_id, time.monotonic())
        self._send_session_event(runner, "reserved", session_id)
        log.info("live runner %s: session %s reserved", runner_id, session_id)
        return session_id, runner

    def release_session(self, runner_id: str, session_id: str) -> None:
        """Release a session (no error when it is already gone, as in go-livepeer)."""
        runner = self.lookup(runner_id)
        self._release_locked(runner, session_id)

    def _release_locked(self, runner: LiveRunner, session_id: str) -> None:
        session = runner.sessions.pop(session_id, None)
        if session is None:
            return
        self._send_session_event(runner, "released", session_id)
        self._close_session_channels(session)
        log.info("live runner %s: session %s released", runner.runner_id, session_id)

    def session(self, runner_id: str, session_id: str) -> tuple[LiveRunner, RunnerSession]:
        """A session of a ready runner, else 404."""
        runner = self.ready_runner(runner_id)
        session = runner.sessions.get(session_id)
        if session is None:
            raise LiveRunnerError(404, "runner session not found")
        return runner, session

    def check_session_token(self, runner_id: str, session_id: str, token: str) -> RunnerSession:
        """The session when ``token`` is its token: 404 unknown, 401 wrong token."""
        runner, session = self.session(runner_id, session_id)
        if not valid_secret(token, runner.session_token(session_id)):
            raise LiveRunnerError(401, "invalid authorization")
        return session

    # ---- session channels and proxies ---------------------------------------------------------

    def create_channel(
        self, runner_id: str, session_id: str, name: str, mime_type: str
    ) -> dict[str, str]:
        """Create (or return the existing) channel ``{session}-{name}`` on the trickle server."""
        name, channel_name = normalize_channel_name(session_id, name)
        if not mime_type.strip():
            mime_type = CONTENT_TYPE_OCTET
        _, session = self.session(runner_id, session_id)
        existing = session.channels.get(name)
        if existing is not None:
            return existing
        url = self.trickle_base + channel_name
        channel = trickle_channel_json(name, channel_name, url, url, mime_type)
        self.trickle.create_channel(channel_name, mime_type)
        session.channels[name] = channel
        return channel

    def delete_channel(self, runner_id: str, session_id: str, name: str) -> None:
        name, _ = normalize_channel_name(session_id, name)
        _, session = self.session(runner_id, session_id)
        channel = session.channels.pop(name, None)
        if channel is None:
            raise LiveRunnerError(404, "trickle channel not found")
        self.trickle.close_channel(channel["channel_name"])

    def create_proxy(self, runner_id: str, session_id: str, target_url: str) -> dict[str, str]:
        """``POST {control}/proxy``: a public URL forwarding to ``target_url`` on the runner's host."""
        target = target_url.strip()
        if not target:
            raise LiveRunnerError(400, "target_url is required")
        parts = urlsplit(target)
        if not parts.netloc or not parts.scheme:
            raise LiveRunnerError(400, "target_url must be an absolute URL")
        if parts.scheme not in ("http", "https"):
            raise LiveRunnerError(400, "target_url scheme must be http or https")
        if parts.fragment:
            raise LiveRunnerError(400, "target_url must not include a fragment")
        runner, session = self.session(runner_id, session_id)
        runner_host = urlsplit(runner.request.runner_url).hostname or ""
        if (parts.hostname or "").lower() != runner_host.lower():
            raise LiveRunnerError(
                400, "target_url hostname must match registered runner_url hostname"
            )
        proxy_id = random_id(_PROXY_ID_RANDOM_BYTES)
        session.proxies[proxy_id] = target
        return {"proxy_id": proxy_id, "url": f"{self.base_url}/run/{proxy_id}"}

    def resolve_proxy(self, proxy_id: str) -> tuple[LiveRunner, str, str]:
        """(runner, session id, target URL) of a session proxy, else 404."""
        for runner in self.runners.values():
            if runner.removed or self._expired(runner) or not runner.ready:
                continue
            for session in runner.sessions.values():
                target = session.proxies.get(proxy_id)
                if target is not None:
                    return runner, session.id, target
        raise LiveRunnerError(404, "live runner proxy not found")

    def _close_session_channels(self, session: RunnerSession) -> None:
        for channel in session.channels.values():
            self.trickle.close_channel(channel["channel_name"])
        session.channels.clear()

    # ---- discovery ----------------------------------------------------------------------------

    def discovery(self) -> list[dict[str, Any]]:
        """``GET /discovery``'s runners (off-chain: no price)."""
        runners = []
        for runner in self.runners.values():
            if runner.removed or self._expired(runner) or not runner.ready:
                continue
            req = runner.request
            kind = "app" if req.mode == MODE_SINGLE_SHOT else "session"
            entry: dict[str, Any] = {"url": f"{self.base_url}/apps/{runner.runner_id}/{kind}"}
            if req.gpu is not None:
                entry["gpu"] = req.gpu
            entry["app"] = req.app
            if req.version:
                entry["version"] = req.version
            if req.metadata:
                entry["metadata"] = req.metadata
            entry["mode"] = req.mode
            entry["capacity"] = req.capacity
            entry["capacity_used"] = len(runner.sessions)
            entry["capacity_available"] = req.capacity - len(runner.sessions)
            runners.append(entry)
        return runners

    # ---- the O2R channel ----------------------------------------------------------------------

    def _open_o2r(self, runner: LiveRunner) -> O2RChannel:
        rid = runner.runner_id
        channel_name = f"{rid}-{derive_secret(runner.seed, 'trickle:o2r')[:16]}-o2r"
        self.trickle.create_channel(channel_name, CONTENT_TYPE_JSON)
        o2r = O2RChannel(
            json=trickle_channel_json(
                "o2r", channel_name, self.trickle_base + channel_name, "", CONTENT_TYPE_JSON
            ),
            queue=asyncio.Queue(O2R_QUEUE_SIZE),
        )
        o2r.writer = asyncio.get_running_loop().create_task(self._write_o2r(o2r), name=f"o2r-{rid}")
        return o2r

    def _send_session_event(self, runner: LiveRunner, event: str, session_id: str) -> None:
        if runner.o2r is None:
            return
        stamp = go_time(datetime.now(timezone.utc))
        message = {"event": event, "session": session_id, "timestamp": stamp}
        try:
            runner.o2r.queue.put_nowait(json.dumps(message, separators=(",", ":")).encode())
        except asyncio.QueueFull:
            log.warning(
                "live runner %s: O2R queue full, %s of session %s dropped",
                runner.runner_id,
                event,
                session_id,
            )

    async def _write_o2r(self, o2r: O2RChannel) -> None:
        """One segment per queued message, and a keep-alive every interval (not at once)."""
        loop = asyncio.get_running_loop()
        next_keepalive = loop.time() + self.o2r_keepalive_interval_s
        while True:
            try:
                message = await asyncio.wait_for(
                    o2r.queue.get(), max(0.0, next_keepalive - loop.time())
                )
            except asyncio.TimeoutError:
                message = O2R_KEEPALIVE
                next_keepalive += self.o2r_keepalive_interval_s
            if not self.trickle.publish_local(o2r.channel_name, message):
                return  # channel closed or swept: the writer ends, as go-livepeer's

    def _close_o2r(self, runner: LiveRunner) -> None:
        o2r, runner.o2r = runner.o2r, None
        if o2r is None:
            return
        if o2r.writer is not None:
            o2r.writer.cancel()
        self.trickle.close_channel(o2r.channel_name)

    # ---- background sweep -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the expiry sweep (every heartbeat interval)."""
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(
                self._sweep_loop(), name="live-runner-sweep"
            )

    async def close(self) -> None:
        """Stop the sweep and every O2R writer; close every channel this registry opened."""
        task, self._sweeper = self._sweeper, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        writers = [r.o2r.writer for r in self.runners.values() if r.o2r and r.o2r.writer]
        self.forget_all()
        for writer in writers:
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval_s)
            self.sweep_expired()


def normalize_channel_name(session_id: str, name: str) -> tuple[str, str]:
    """go-livepeer's channel naming: trimmed, ``/`` -> ``-``, ``[A-Za-z0-9_-]+``."""
    name = name.strip().replace("/", "-")
    if not name:
        raise LiveRunnerError(400, "trickle channel name is required")
    if not _CHANNEL_NAME.match(name):
        raise LiveRunnerError(
            400,
            "trickle channel name may only contain alphanumerics, underscores, or hyphens",
        )
    return name, f"{session_id}-{name}"


def go_time(moment: datetime) -> str:
    """A UTC time as Go's ``time.Time`` marshals to JSON (RFC 3339, fraction trimmed)."""
    text = moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0")
    return text.rstrip(".") + "Z"
