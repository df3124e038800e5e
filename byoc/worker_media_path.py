"""The media path of streams across the worker processes (the parent's side).

For each stream the parent creates two frame rings (ingest -> infer, infer -> egress), tells each
worker its part with a typed ``StreamStart``, and relays what crosses between workers without a
ring: audio packets (ingest -> egress) and text outputs (infer -> the stream's data channel). It
never touches pixels. Workflow problems come back from the infer worker as a ``StreamReply`` and
reach the HTTP caller as 400s. After a worker restart the streams' parts are sent to it again; the
rings, owned here, outlive any worker.

With several infer workers each stream is served by the one ``supervisor.placement`` assigned it
(the least loaded when it started); its start, updates, stop and resumption after a restart go to
that worker only, so a crash of one infer worker leaves the streams of the others untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from byoc.livepeer.trickle import JsonLinesPublisher, TricklePublisher
from byoc.livepeer.trickle.constants import CONTENT_TYPE_JSONL
from byoc.media_path import MediaUnavailable, ParamsRejected, StreamSpec
from byoc.settings import Settings
from byoc.stream_params import output_size
from byoc.supervisor import Supervisor
from byoc.worker_names import worker_role_index
from byoc.worker_requests import ReplyTimeout, WorkerUnavailable
from ipc.channel import ChannelClosed
from ipc.deadline import within
from ipc.messages import (
    EgressConfig,
    InferConfig,
    IngestConfig,
    Message,
    StreamAudio,
    StreamConfig,
    StreamData,
    StreamReply,
    StreamStart,
    StreamStop,
    StreamUpdate,
)
from ipc.pixfmt import RingPixelFormat
from ipc.ring import FrameRing, RingSpec
from ipc.ring_format import ring_pixel_format
from ipc.shm import Direction
from ipc.untrusted_json import UntrustedJsonError, loads_untrusted

log = logging.getLogger(__name__)

DATA_CLOSE_TIMEOUT_S = 5.0


@dataclass
class MediaStream:
    """The parent's record of one stream's media path."""

    spec: StreamSpec
    rings: list[FrameRing]
    configs: dict[str, StreamConfig]
    """Each worker's part, by role."""
    params: dict[str, Any]
    infer_worker: str = "infer"
    """The name of the infer worker that serves this stream."""
    data: JsonLinesPublisher | None = None
    data_task: asyncio.Task[None] | None = None
    data_queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(256))
    data_dropped: int = 0
    started: set[str] = field(default_factory=set)
    """The roles whose worker was sent its part. Egress may start before infer's warm-up ended: a
    WHEP viewer attaching then gets its answer at once, so its ICE/DTLS handshake overlaps the
    warm-up, and the first processed frame goes out as soon as it exists."""
    whep_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Held while a WHEP viewer makes sure egress has the stream: a second viewer's offer must
    not reach egress before the stream's start does."""


def _workflow_text(params: dict[str, Any]) -> str:
    for key in ("prompts", "workflow"):
        value = params.get(key)
        if value not in (None, ""):
            return value if isinstance(value, str) else json.dumps(value)
    return ""


class WorkerMediaPath:
    """``MediaPath`` over the ingest, infer and egress worker processes."""

    def __init__(
        self,
        supervisor: Supervisor,
        settings: Settings,
        *,
        ring_slots: int | None = None,
        max_width: int | None = None,
        max_height: int | None = None,
        reply_timeout_s: float = 60.0,
        worker_wait_s: float = 30.0,
        stats_interval_s: float = 1.0,
        pixel_format: RingPixelFormat | None = None,
    ) -> None:
        self.supervisor = supervisor
        self.settings = settings
        # Defaults from the settings; tests pass smaller rings.
        self.ring_slots = ring_slots or settings.ring_slots
        self.max_width = max_width or settings.ring_max_width
        self.max_height = max_height or settings.ring_max_height
        self.reply_timeout_s = reply_timeout_s
        self.worker_wait_s = worker_wait_s
        self.stats_interval_s = stats_interval_s
        self.pixel_format = pixel_format
        """The rings' pixel format for every stream; None: chosen from the infer worker's
        device (``ipc.ring_format``)."""
        self.streams: dict[str, MediaStream] = {}

    def connect_workers(self) -> None:
        """Route the stream messages that cross between workers here, and resume streams on a
        restarted worker (called once by whoever wires the parent together)."""
        self.supervisor.route(StreamAudio, self.on_stream_audio)
        self.supervisor.route(StreamData, self.on_stream_data)
        self.supervisor.on_restart(self.on_worker_restart)

    # -- MediaPath --------------------------------------------------------------------------

    async def start(self, spec: StreamSpec) -> None:
        params = dict(spec.params)
        width, height = output_size(params, max_side=self.settings.max_image_side)
        if not (spec.subscribe_url or spec.source_path or spec.publish_url or spec.output_path):
            log.info("stream %s: no media channels, control plane only", spec.stream_id)
        # The stream's infer worker first: its device decides the rings' pixel format.
        infer_worker = self.supervisor.placement.assign(spec.stream_id)
        try:
            pixel_format = await self._ring_format(infer_worker)
            rings = self._create_rings(spec.stream_id, width, height, pixel_format)
        except BaseException:
            self.supervisor.placement.release(spec.stream_id)
            raise
        configs: dict[str, StreamConfig] = {
            "infer": InferConfig(
                in_ring=rings[0].spec,
                out_ring=rings[1].spec,
                workflow=_workflow_text(params),
                width=width,
                height=height,
                live=not spec.source_path,
                stats_interval_s=self.stats_interval_s,
            )
        }
        if spec.publish_url or spec.output_path:
            configs["egress"] = self._egress_config(spec, rings[1].spec, whep=not spec.source_path)
        if spec.subscribe_url or spec.source_path:
            configs["ingest"] = IngestConfig(
                ring=rings[0].spec,
                subscribe_url=spec.subscribe_url or "",
                source_path=spec.source_path or "",
                verify_tls=self.settings.trickle_verify_tls,
                audio="egress" in configs,
                pacing_buffer_s=self.settings.ingest_buffer_s,
                stats_interval_s=self.stats_interval_s,
            )
        stream = MediaStream(
            spec=spec,
            rings=rings,
            configs=configs,
            params=params,
            infer_worker=infer_worker,
        )
        self.streams[spec.stream_id] = stream
        # Parts attached meanwhile (a WHIP input, an early WHEP viewer's egress) were started by
        # whoever attached them.
        parts = [w for w in ("egress", "ingest") if w in configs]  # the consumer first
        try:
            stream.started.add("infer")
            await self._request(stream.infer_worker, spec.stream_id, configs["infer"])
            for worker in parts:
                if worker not in stream.started:
                    await self._start_part(stream, worker)
            if spec.data_url:
                stream.data = JsonLinesPublisher(
                    # Where the channel stands: seq 0 on a new stream, the next segment on one
                    # resumed after a runner restart.
                    TricklePublisher(
                        spec.data_url,
                        CONTENT_TYPE_JSONL,
                        verify_tls=self.settings.trickle_verify_tls,
                        start_seq=None,
                    )
                )
                stream.data_task = asyncio.create_task(
                    self._publish_data(stream), name=f"data-{spec.stream_id}"
                )
        except BaseException:
            await self.stop(spec.stream_id, "set-up failed")
            raise
        log.info(
            "stream %s: media path started (%s; %s rings)",
            spec.stream_id,
            ", ".join(sorted(configs)),
            pixel_format,
        )

    async def attach_whip(
        self, stream_id: str, *, wait_s: float = 10.0, alive: Callable[[], bool] = lambda: True
    ) -> None:
        """Give a stream a WHIP input (its offer follows as a ``PeerOffer``); the stream's rings
        exist as soon as it was admitted, so this does not wait for infer's warm-up."""
        stream = await self._admitted(stream_id, wait_s, alive)
        config = IngestConfig(
            ring=stream.rings[0].spec,
            whip=True,
            idle_timeout_s=self.settings.webrtc_idle_timeout_s,
            early_frames=self.settings.webrtc_early_frames,
            stats_interval_s=self.stats_interval_s,
        )
        stream.configs["ingest"] = config
        await self._start_part(stream, "ingest")

    async def attach_whep(self, stream_id: str) -> bool:
        """Make sure the stream's egress serves WHEP viewers, starting it when needed (also while
        infer still warms the workflow up: the viewer's answer and handshake need no processed
        frame). False while the stream has no media path yet (a viewer then gets 409 and
        retries), and for a clip's file output (no live viewers)."""
        stream = self.streams.get(stream_id)
        if stream is None:
            return False
        async with stream.whep_lock:
            egress = stream.configs.get("egress")
            if egress is None:
                config = self._egress_config(None, stream.rings[1].spec, whep=True)
                stream.configs["egress"] = config
            elif not (isinstance(egress, EgressConfig) and egress.whep):
                return False
            if "egress" not in stream.started:
                await self._start_part(stream, "egress")
        return True

    async def _start_part(self, stream: MediaStream, role: str) -> None:
        """Send ``role``'s worker its part of ``stream`` (once; a restarted worker gets it again
        from ``on_worker_restart``)."""
        stream.started.add(role)  # before the await: a second viewer must not start it again
        start = StreamStart(stream_id=stream.spec.stream_id, config=stream.configs[role])
        try:
            await self._send(self._worker(stream, role), start)
        except BaseException:
            stream.started.discard(role)
            raise

    async def _admitted(
        self, stream_id: str, wait_s: float, alive: Callable[[], bool]
    ) -> MediaStream:
        deadline = asyncio.get_running_loop().time() + wait_s
        while (stream := self.streams.get(stream_id)) is None:
            if not alive() or asyncio.get_running_loop().time() >= deadline:
                raise MediaUnavailable(f"stream {stream_id} has no media path")
            await asyncio.sleep(0.01)
        return stream

    async def update(self, stream_id: str, params: dict[str, Any]) -> None:
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        media_keys = {"prompts", "workflow", "width", "height"}
        if not media_keys & params.keys():
            stream.params.update(params)
            return
        merged = {**stream.params, **params}
        output_size(merged, max_side=self.settings.max_image_side)  # both or neither, in range
        request_id = secrets.token_hex(8)
        reply = await self._ask(
            stream.infer_worker,
            StreamUpdate(stream_id=stream_id, params=params, request_id=request_id),
            request_id,
        )
        self._check(reply)
        stream.params = merged
        infer = stream.configs["infer"]
        assert isinstance(infer, InferConfig)
        width, height = output_size(merged, max_side=self.settings.max_image_side)
        stream.configs["infer"] = InferConfig(
            in_ring=infer.in_ring,
            out_ring=infer.out_ring,
            workflow=_workflow_text(merged),
            width=width,
            height=height,
            live=infer.live,
            stats_interval_s=infer.stats_interval_s,
        )

    async def stop(self, stream_id: str, reason: str) -> None:
        stream = self.streams.pop(stream_id, None)
        if stream is None:
            return
        self.supervisor.placement.release(stream_id)
        for role in stream.configs:
            with contextlib.suppress(ChannelClosed, OSError):
                await self.supervisor.send(
                    self._worker(stream, role), StreamStop(stream_id=stream_id, reason=reason)
                )
        if stream.data_task is not None:
            stream.data_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stream.data_task
        try:
            if stream.data is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(stream.data.close(), within(DATA_CLOSE_TIMEOUT_S))
        finally:
            for ring in stream.rings:
                ring.close()
                ring.unlink()
        log.info("stream %s: media path stopped (%s)", stream_id, reason)

    def uses_worker(self, stream_id: str, worker: str) -> bool:
        """Whether ``worker`` (a name such as ``infer-1``) serves a part of the stream."""
        stream = self.streams.get(stream_id)
        if stream is None:
            return False
        role, _ = worker_role_index(worker)
        return role in stream.configs and self._worker(stream, role) == worker

    def alive(self, stream_id: str) -> bool:
        stream = self.streams.get(stream_id)
        return stream is not None and not any(ring.closed for ring in stream.rings)

    async def close(self) -> None:
        """Stop every stream's media path (runner shutdown)."""
        for stream_id in list(self.streams):
            await self.stop(stream_id, "runner shutting down")

    # -- worker messages ------------------------------------------------------------------------

    async def on_stream_audio(self, worker: str, message: StreamAudio) -> None:
        """Relay ingest's audio packets to the stream's egress."""
        stream = self.streams.get(message.stream_id)
        if stream is not None and "egress" in stream.configs:
            with contextlib.suppress(ChannelClosed, OSError):
                await self.supervisor.send("egress", message)

    def on_stream_data(self, worker: str, message: StreamData) -> None:
        """Queue infer's text output for the stream's data channel."""
        self._queue_data(message)

    async def on_worker_restart(self, worker: str, restarts: int) -> None:
        """Give a restarted worker its part of every stream it served (same rings)."""
        role, _ = worker_role_index(worker)
        for stream_id, stream in list(self.streams.items()):
            config = stream.configs.get(role)
            if config is None or self._worker(stream, role) != worker:
                continue
            if role not in stream.started:
                continue  # not started yet: the set-up still starts it
            log.info("stream %s: resuming on restarted %s worker", stream_id, worker)
            with contextlib.suppress(ChannelClosed, OSError):
                await self.supervisor.send(worker, StreamStart(stream_id=stream_id, config=config))

    # -- internals ------------------------------------------------------------------------------

    @staticmethod
    def _worker(stream: MediaStream, role: str) -> str:
        """The name of the worker that runs ``role``'s part of ``stream``."""
        return stream.infer_worker if role == "infer" else role

    def _egress_config(
        self, spec: StreamSpec | None, ring: RingSpec, *, whep: bool
    ) -> EgressConfig:
        """Egress's part of a stream, with the output knobs of the settings; no ``spec``: WHEP
        viewers only (no trickle or file output)."""
        return EgressConfig(
            ring=ring,
            whep=whep,
            publish_url=(spec.publish_url or "") if spec is not None else "",
            output_path=(spec.output_path or "") if spec is not None else "",
            verify_tls=self.settings.trickle_verify_tls,
            segment_seconds=self.settings.segment_seconds,
            preset=self.settings.x264_preset,
            crf=self.settings.output_crf,
            bit_rate=self.settings.output_bitrate,
            whep_bit_rate=self.settings.whep_bitrate,
            whep_keyframe_min_interval_s=self.settings.whep_keyframe_min_interval_s,
            stats_interval_s=self.stats_interval_s,
        )

    async def _ring_format(self, infer_worker: str) -> RingPixelFormat:
        """The pixel format of a new stream's rings: from the device ``infer_worker`` (the one
        serving the stream) reported when it started, waiting for it to be ready as the stream's
        start does anyway."""
        if self.pixel_format is not None:
            return self.pixel_format
        if not await self.supervisor.wait_worker_ready(infer_worker, self.worker_wait_s):
            raise MediaUnavailable(f"the {infer_worker} worker is not ready, try again shortly")
        device = self.supervisor.workers[infer_worker].detail.get("device", "")
        return ring_pixel_format(device)

    def _create_rings(
        self, stream_id: str, width: int, height: int, pixel_format: RingPixelFormat
    ) -> list[FrameRing]:
        max_w, max_h = max(self.max_width, width), max(self.max_height, height)
        rings: list[FrameRing] = []
        try:
            for direction in (Direction.IN, Direction.OUT):
                spec = RingSpec.for_stream(
                    stream_id,
                    direction,
                    slots=self.ring_slots,
                    max_width=max_w,
                    max_height=max_h,
                    pixel_format=pixel_format,
                )
                rings.append(FrameRing.create(spec))
        except BaseException:
            for ring in rings:
                ring.close()
                ring.unlink()
            raise
        return rings

    async def _send(self, worker: str, message: Message) -> None:
        if not await self.supervisor.wait_worker_ready(worker, self.worker_wait_s):
            raise MediaUnavailable(f"the {worker} worker is not ready, try again shortly")
        try:
            await self.supervisor.send(worker, message)
        except ChannelClosed as exc:
            raise MediaUnavailable(f"the {worker} worker is unavailable: {exc}") from exc

    async def _request(self, worker: str, stream_id: str, config: StreamConfig) -> None:
        request_id = secrets.token_hex(8)
        start = StreamStart(stream_id=stream_id, config=config, request_id=request_id)
        self._check(await self._ask(worker, start, request_id))

    async def _ask(
        self, worker: str, message: StreamStart | StreamUpdate, request_id: str
    ) -> StreamReply:
        """Send a request and return its reply; a worker that is not ready, or whose process
        ends before it answers, is ``MediaUnavailable`` (503)."""
        if not await self.supervisor.wait_worker_ready(worker, self.worker_wait_s):
            raise MediaUnavailable(f"the {worker} worker is not ready, try again shortly")
        try:
            reply = await self.supervisor.requests.ask(
                worker, message, request_id, self.reply_timeout_s
            )
        except WorkerUnavailable as exc:  # WorkerLost included
            raise MediaUnavailable(str(exc)) from exc
        except ReplyTimeout as exc:
            raise RuntimeError(str(exc)) from None
        if not isinstance(reply, StreamReply):
            raise RuntimeError(f"{worker}: unexpected reply {type(reply).__name__}")
        return reply

    @staticmethod
    def _check(reply: StreamReply) -> None:
        if reply.status == 400:
            raise ParamsRejected(reply.error)
        if reply.status >= 300:
            raise RuntimeError(f"{reply.worker}: {reply.error or reply.status}")

    def _queue_data(self, message: StreamData) -> None:
        stream = self.streams.get(message.stream_id)
        if stream is None or stream.data is None:
            return
        try:
            line = loads_untrusted(message.line, what="data line")
        except UntrustedJsonError as exc:  # a workflow's text output is the client's content
            log.warning("stream %s: data line dropped: %s", message.stream_id, exc)
            return
        try:
            stream.data_queue.put_nowait(line)
        except asyncio.QueueFull:
            stream.data_dropped += 1  # the data channel is slower than the workflow: drop

    async def _publish_data(self, stream: MediaStream) -> None:
        assert stream.data is not None
        while True:
            line = await stream.data_queue.get()
            try:
                await stream.data.send(line)
            except Exception as exc:
                log.warning(
                    "stream %s: data channel publish failed: %s", stream.spec.stream_id, exc
                )
