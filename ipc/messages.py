"""Control messages between the parent and its workers.

Every message is a tagged msgspec ``Struct``; the ``type`` field names it on the wire (msgpack).
``Message`` is the union a channel accepts: anything else is rejected at the boundary.
"""

from __future__ import annotations

from typing import Any, Literal, cast, get_args

import msgspec

from ipc.pixfmt import RingPixelFormat
from ipc.ring import RingSpec

WorkerRole = Literal["ingest", "infer", "egress"]
"""What a worker does. A worker is its role plus an index (``worker_index``, 0 for the first), so
several workers of one role (one infer worker per GPU) can be told apart."""
WORKER_ROLES: tuple[str, ...] = get_args(WorkerRole)


def worker_role(name: str) -> WorkerRole:
    """``name`` as a ``WorkerRole``; ``ValueError`` for anything else."""
    if name not in WORKER_ROLES:
        raise ValueError(f"unknown worker role {name!r}; one of {', '.join(WORKER_ROLES)}")
    return cast(WorkerRole, name)


StreamPartState = Literal["connected", "processing", "ended", "completed", "failed"]
"""A worker's part of a stream: ``connected`` (a peer is connected, no frame yet),
``processing`` (frames flow), then one of ``ended`` (the input went away), ``completed`` (a
finite input or output is done) or ``failed``."""

DropReason = Literal[
    # ingest
    "decode_error",
    "skipped_until_keyframe",
    "damaged_input",
    "scaled",
    "pacing_catch_up",
    "audio_unsupported",
    "late_frame",
    "audio_late",
    # infer
    "infer_behind",
    "workflow_error",
    "input_ring_overwrite",
    # egress
    "ring_overwrite",
    "non_increasing_pts",
    "before_keyframe",
    "mp4_scaled",
    "audio_overflow",
    "audio_decode_error",
    "audio_before_video",
    "audio_no_track",
    "audio_non_increasing_pts",
    "whep_skipped",
    "audio_whep_overflow",
]
"""Why a worker counted a frame or packet in ``StreamStats.dropped``. ``scaled``,
``mp4_scaled``, ``workflow_error`` and ``pacing_catch_up`` frames were still delivered (changed
or unchanged); ``audio_*`` reasons count audio; every other reason is a lost video frame
(``whep_skipped``: a picture one WHEP viewer skipped because a newer one was ready)."""
DROP_REASONS: tuple[str, ...] = get_args(DropReason)
DELIVERED_REASONS: frozenset[str] = frozenset(
    {"scaled", "mp4_scaled", "workflow_error", "pacing_catch_up"}
)

X264Preset = Literal["ultrafast", "superfast", "veryfast"]
"""libx264 presets egress offers (slower ones cost more than a frame interval at HD)."""
X264_PRESETS: tuple[str, ...] = get_args(X264Preset)

RING_PIXEL_FORMATS: tuple[str, ...] = get_args(RingPixelFormat)
"""Pixel formats a stream's rings may have; ``RingSpec.pixel_format`` (in every stream config)
is typed with them, so a start message naming another is rejected when it is decoded."""

EngineName = Literal["auto", "builtin", "comfyui"]
"""Inference engines: ``auto`` picks ComfyUI when importable, else the built-in engine."""
ENGINE_NAMES: tuple[str, ...] = get_args(EngineName)


class _Base(msgspec.Struct, tag_field="type"):
    """Common base: every message carries its tag in the ``type`` field."""


# --- lifecycle -------------------------------------------------------------------------------


class Ready(_Base, tag="ready"):
    """A worker finished starting and accepts work."""

    worker: WorkerRole
    pid: int
    detail: dict[str, str] = {}
    worker_index: int = 0
    """Which worker of its role sent it (0: the first)."""


class Heartbeat(_Base, tag="heartbeat"):
    """Sent by a worker's event loop every interval; silence means the loop is stuck."""

    worker: WorkerRole
    seq: int
    monotonic_ns: int
    active_streams: int = 0
    worker_index: int = 0
    """Which worker of its role sent it (0: the first)."""


class Shutdown(_Base, tag="shutdown"):
    """Parent asks a worker to stop everything and exit."""

    reason: str = ""
    timeout_s: float = 0.0
    """When set, every network wait of the worker's clean-up shares this deadline."""


class WorkerError(_Base, tag="worker_error"):
    """A worker reports an error that is not tied to a request (a stream, a job)."""

    worker: WorkerRole
    message: str
    stream_id: str = ""
    fatal: bool = False
    worker_index: int = 0
    """Which worker of its role sent it (0: the first)."""


class Probe(_Base, tag="probe"):
    """Parent asks a worker for diagnostics; ``what`` is ``"modules"`` (imported modules)."""

    what: str


class ProbeResult(_Base, tag="probe_result"):
    """A worker's answer to ``Probe``."""

    worker: WorkerRole
    what: str
    data: list[str]
    worker_index: int = 0
    """Which worker of its role sent it (0: the first)."""


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
    whip: bool = False
    """The input is a WHIP peer: its offer comes as a ``PeerOffer`` after the start."""
    idle_timeout_s: float = 10.0
    """A WHIP peer that sends no media for this long has gone: the stream ends."""
    early_frames: bool = True
    """WHIP video: decode a frame once its packets are complete (not when the next one starts)."""


class InferOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The infer worker's start options (``WorkerSpec.options``), validated when it starts."""

    engine: EngineName | None = None
    """None: ``$COMFY_ENGINE``, else ``auto``."""
    workspace: str = ""
    """ComfyUI's working directory (models, custom_nodes); empty: the current directory."""
    max_image_side: int = 4096
    """Largest width or height of an image job's input."""
    max_workflow_memory_mb: int = 4096
    """Largest image (width x height x batch, float32) one workflow node may ask for."""
    gpu: str = ""
    """The CUDA device this worker owns (a ``CUDA_VISIBLE_DEVICES`` entry); empty: the
    default device. Several infer workers on a multi-GPU host get one GPU each."""


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
    """Length of a trickle segment; each opens with a keyframe, so it is also the GOP."""
    preset: X264Preset = "superfast"
    crf: int = 23
    bit_rate: int = 0
    """Target bits per second of the video; 0: constant quality (``crf``)."""
    audio: bool = True
    stats_interval_s: float = 1.0
    whep: bool = False
    """Serve WHEP viewers (``PeerOffer``) from the ring, beside or instead of the other outputs."""
    whep_bit_rate: int = 1_500_000
    """Bits per second of the one stream (per codec) every WHEP viewer of the stream gets."""
    whep_keyframe_min_interval_s: float = 0.5
    """Shortest time between two keyframes that WHEP viewers' requests (PLI/FIR, joins) force."""


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
    worker: WorkerRole
    request_id: str
    status: int
    error: str = ""
    worker_index: int = 0
    """Which worker of its role sent it (0: the first)."""


class StreamStop(_Base, tag="stream_stop"):
    """Stop the worker's part of a stream and release what it holds."""

    stream_id: str
    reason: str = ""


class StreamState(_Base, tag="stream_state"):
    """A worker's part of a stream changed state (``ready``, ``processing``, ``ended``, ``failed``)."""

    stream_id: str
    worker: WorkerRole
    state: StreamPartState
    error: str = ""
    worker_index: int = 0
    """Which worker of its role sent it (0: the first)."""


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
    worker: WorkerRole
    fps_in: float = 0.0
    fps_out: float = 0.0
    frames_in: int = 0
    frames_out: int = 0
    dropped: dict[DropReason, int] = {}
    stages: dict[str, StageLatency] = {}
    bytes_in: int = 0
    """Media bytes read from the stream's trickle input, total since the stream started here."""
    bytes_out: int = 0
    """Media bytes published to the stream's trickle output, total since it started here."""
    worker_index: int = 0
    """Which worker of its role sent it (0: the first)."""
    encoders: dict[str, int] = {}
    """Egress with WHEP viewers: the shared encoders' totals (``viewers``, ``encoders`` running,
    ``encoders_opened``, ``pictures``, ``frames_encoded``, ``keyframes``,
    ``keyframe_requests``, ``keyframes_forced``)."""


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


# --- WebRTC signalling (parent <-> the worker that holds the peer connection) ---------------


class IceServer(msgspec.Struct):
    """A STUN or TURN server (``RTCIceServer``)."""

    urls: list[str]
    username: str = ""
    credential: str = ""


PeerRole = Literal["whip", "whep"]


class PeerOffer(_Base, tag="peer_offer"):
    """A WHIP publisher's (ingest) or a WHEP viewer's (egress) SDP offer; answered with a
    ``PeerAnswer`` carrying the same ``request_id``."""

    stream_id: str
    peer_id: str
    request_id: str
    role: PeerRole
    sdp: str
    ice_servers: list[IceServer] = []


class PeerCandidates(_Base, tag="peer_candidates"):
    """Late ICE candidates of a peer (a WHIP/WHEP ``PATCH`` body, trickle-ice-sdpfrag)."""

    stream_id: str
    peer_id: str
    request_id: str
    sdpfrag: str


class PeerClose(_Base, tag="peer_close"):
    """Close one WHEP viewer (``DELETE`` of its resource); answered with a ``PeerAnswer``."""

    stream_id: str
    peer_id: str
    request_id: str


class PeerAnswer(_Base, tag="peer_answer"):
    """A worker's answer to ``PeerOffer``/``PeerCandidates``/``PeerClose``.

    ``status`` is HTTP-like: 201 answered (``sdp``), 204 candidates added, 200 closed, 400 bad
    SDP, 404 no such stream or peer, 422 an offer or PATCH the worker does not support."""

    stream_id: str
    peer_id: str
    request_id: str
    status: int
    sdp: str = ""
    error: str = ""


class PeerGone(_Base, tag="peer_gone"):
    """A WHEP viewer's connection ended by itself (closed, failed, idle)."""

    stream_id: str
    peer_id: str
    reason: str = ""


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
    | PeerOffer
    | PeerCandidates
    | PeerClose
    | PeerAnswer
    | PeerGone
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
    PeerOffer,
    PeerCandidates,
    PeerClose,
    PeerAnswer,
    PeerGone,
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
