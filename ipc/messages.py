"""Control messages between the parent and its workers.

Every message is a tagged msgspec ``Struct``; the ``type`` field names it on the wire (msgpack).
``Message`` is the union a channel accepts: anything else is rejected at the boundary.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from ipc.ring import RingSpec

WorkerName = Literal["ingest", "infer", "egress"]


class _Base(msgspec.Struct, tag_field="type"):
    """Common base: every message carries its tag in the ``type`` field."""


# --- lifecycle -------------------------------------------------------------------------------


class Ready(_Base, tag="ready"):
    """A worker finished starting and accepts work."""

    worker: str
    pid: int
    detail: dict[str, str] = {}


class Heartbeat(_Base, tag="heartbeat"):
    """Sent by a worker's event loop every interval; silence means the loop is stuck."""

    worker: str
    seq: int
    monotonic_ns: int
    active_streams: int = 0


class Shutdown(_Base, tag="shutdown"):
    """Parent asks a worker to stop everything and exit."""

    reason: str = ""
    timeout_s: float = 0.0
    """When set, every network wait of the worker's clean-up shares this deadline."""


class WorkerError(_Base, tag="worker_error"):
    """A worker reports an error that is not tied to a request (a stream, a job)."""

    worker: str
    message: str
    stream_id: str = ""
    fatal: bool = False


class Probe(_Base, tag="probe"):
    """Parent asks a worker for diagnostics; ``what`` is ``"modules"`` (imported modules)."""

    what: str


class ProbeResult(_Base, tag="probe_result"):
    """A worker's answer to ``Probe``."""

    worker: str
    what: str
    data: list[str]


# --- streams ---------------------------------------------------------------------------------


class IngestConfig(msgspec.Struct, tag="ingest", kw_only=True):
    """The ingest worker's part of a stream: decode ``subscribe_url`` (live trickle input) or
    ``source_path`` (an uploaded clip, read at its own frame rate) into ``ring``."""

    ring: RingSpec
    subscribe_url: str = ""
    source_path: str = ""
    verify_tls: bool = False
    audio: bool = True
    """Forward the input's audio packets (``StreamAudio``) towards egress."""
    pacing_buffer_s: float = 2.5
    """Live input: seconds of compressed packets held to release a burst at the input's own
    cadence (0: decode everything as it arrives)."""
    stats_interval_s: float = 1.0


class InferConfig(msgspec.Struct, tag="infer", kw_only=True):
    """The infer worker's part: run ``workflow`` on frames of ``in_ring``, write ``out_ring``."""

    in_ring: RingSpec
    out_ring: RingSpec
    workflow: str = ""
    """API-format workflow(s) as JSON text; empty means passthrough."""
    width: int = 0
    height: int = 0
    """Output size (both or neither, 0 = the input's size)."""
    live: bool = True
    """Live input: when inference is behind, the newest frame wins and older ones are skipped.
    False for an uploaded clip: every frame is processed, in order."""
    stats_interval_s: float = 1.0


class EgressConfig(msgspec.Struct, tag="egress", kw_only=True):
    """The egress worker's part: encode frames of ``ring`` and publish MPEG-TS segments to
    ``publish_url`` and/or write an MP4 file to ``output_path`` (a processed clip)."""

    ring: RingSpec
    publish_url: str = ""
    output_path: str = ""
    verify_tls: bool = False
    segment_seconds: float = 1.0
    audio: bool = True
    stats_interval_s: float = 1.0


StreamConfig = IngestConfig | InferConfig | EgressConfig


class StreamStart(_Base, tag="stream_start"):
    """Start (or, after a worker restart, resume) the worker's part of a stream.

    With a ``request_id`` the worker answers with a ``StreamReply`` once its part is set up (infer:
    the workflow validated and warmed up) or failed."""

    stream_id: str
    config: StreamConfig
    request_id: str = ""


class StreamUpdate(_Base, tag="stream_update"):
    """Apply new parameters to a running stream (e.g. a new workflow)."""

    stream_id: str
    params: dict[str, Any]
    request_id: str = ""
    """When set, the worker answers with a ``StreamReply`` (applied, or rejected and why)."""


class StreamReply(_Base, tag="stream_reply"):
    """A worker's answer to a ``StreamStart``/``StreamUpdate`` that carried a ``request_id``.

    ``status`` is HTTP-like: 200 applied, 400 the parameters were rejected (the old ones stay),
    500 the worker failed."""

    stream_id: str
    worker: str
    request_id: str
    status: int
    error: str = ""


class StreamStop(_Base, tag="stream_stop"):
    """Stop the worker's part of a stream and release what it holds."""

    stream_id: str
    reason: str = ""


class StreamState(_Base, tag="stream_state"):
    """A worker's part of a stream changed state (``ready``, ``processing``, ``ended``, ``failed``)."""

    stream_id: str
    worker: str
    state: str
    error: str = ""


class StageLatency(msgspec.Struct):
    """Percentiles of one stage's latency, in milliseconds, over a report interval."""

    p50: float
    p95: float
    p99: float
    count: int
    sum_ms: float = 0.0
    buckets: dict[int, int] = {}
    """The interval's samples by bucket of ``ipc.stats.LatencyHistogram`` (index -> count,
    non-empty buckets only), so the parent can keep a cumulative histogram without the workers
    doing anything per frame beyond what they already do."""


class StreamStats(_Base, tag="stream_stats"):
    """Per-stream figures a worker measured over its last report interval."""

    stream_id: str
    worker: str
    fps_in: float = 0.0
    fps_out: float = 0.0
    frames_in: int = 0
    frames_out: int = 0
    dropped: dict[str, int] = {}
    stages: dict[str, StageLatency] = {}
    bytes_in: int = 0
    """Media bytes read from the stream's trickle input, total since the stream started here."""
    bytes_out: int = 0
    """Media bytes published to the stream's trickle output, total since it started here."""


class StreamAudio(_Base, tag="stream_audio"):
    """One encoded audio packet of a stream's input (ingest -> parent -> egress).

    Audio does not go through inference: it is carried beside the video and muxed again by pts.
    """

    stream_id: str
    codec: str
    """``aac`` (ADTS) or ``opus``."""
    pts: int
    """In 90 kHz units, on the same timeline as the stream's video frames."""
    data: bytes
    sample_rate: int = 48000
    channels: int = 2


class StreamData(_Base, tag="stream_data"):
    """Text output of a workflow for a stream's data channel (one JSON line)."""

    stream_id: str
    line: str


# --- one-shot jobs ---------------------------------------------------------------------------


class JobRequest(_Base, tag="job_request"):
    """A one-shot job for a worker (e.g. ``comfystream-image`` runs in infer)."""

    job_id: str
    kind: str
    payload: bytes
    want_progress: bool = False


class JobProgress(_Base, tag="job_progress"):
    """Progress of a running job (e.g. one executed node)."""

    job_id: str
    data: dict[str, Any]


class JobResult(_Base, tag="job_result"):
    """The end of a job: ``status`` is an HTTP-like code (200 success, 4xx client error)."""

    job_id: str
    status: int
    payload: bytes = b""
    error: str = ""


Message = (
    Ready
    | Heartbeat
    | Shutdown
    | WorkerError
    | Probe
    | ProbeResult
    | StreamStart
    | StreamUpdate
    | StreamReply
    | StreamStop
    | StreamState
    | StreamStats
    | StreamAudio
    | StreamData
    | JobRequest
    | JobProgress
    | JobResult
)

MESSAGE_TYPES: tuple[type[msgspec.Struct], ...] = (
    Ready,
    Heartbeat,
    Shutdown,
    WorkerError,
    Probe,
    ProbeResult,
    StreamStart,
    StreamUpdate,
    StreamReply,
    StreamStop,
    StreamState,
    StreamStats,
    StreamAudio,
    StreamData,
    JobRequest,
    JobProgress,
    JobResult,
)

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Message)


def encode(message: Message) -> bytes:
    """Encode one message to msgpack."""
    return _encoder.encode(message)


def decode(data: bytes) -> Message:
    """Decode and validate one message; raises ``msgspec.DecodeError``/``ValidationError``."""
    return _decoder.decode(data)
