"""Every control message type round-trips through msgpack; bad input is rejected at the boundary."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from ipc import messages as m
from ipc.ring import RingSpec

RING = RingSpec(
    name="cbyoc-1-abc-in", slots=4, max_width=512, max_height=512, pixel_format="yuv420p"
)

SAMPLES: list[Any] = [
    m.Ready(worker="infer", pid=123, detail={"engine": "builtin", "device": "cpu"}),
    m.Heartbeat(worker="ingest", seq=7, monotonic_ns=123456789, active_streams=2),
    m.Shutdown(reason="runner stopping"),
    m.WorkerError(worker="egress", message="encoder failed", stream_id="s1", fatal=True),
    m.Probe(what="modules"),
    m.ProbeResult(worker="infer", what="modules", data=["numpy", "torch"]),
    m.StreamStart(
        stream_id="s1", config=m.IngestConfig(subscribe_url="http://o/ai/trickle/s1", ring=RING)
    ),
    m.StreamStart(
        stream_id="s1",
        config=m.InferConfig(in_ring=RING, out_ring=RING, workflow="{}", width=256, height=256),
    ),
    m.StreamStart(
        stream_id="s1",
        config=m.EgressConfig(ring=RING, publish_url="http://o/ai/trickle/s1-out", audio=False),
    ),
    m.StreamUpdate(stream_id="s1", params={"prompts": [{"1": {"class_type": "ImageInvert"}}]}),
    m.StreamReply(stream_id="s1", worker="infer", request_id="r1", status=400, error="bad node"),
    m.StreamStop(stream_id="s1", reason="stop requested"),
    m.StreamState(stream_id="s1", worker="ingest", state="processing"),
    m.StreamStats(
        stream_id="s1",
        worker="infer",
        fps_in=29.9,
        fps_out=29.8,
        frames_in=300,
        frames_out=299,
        dropped={"ring_overwrite": 1},
        stages={"infer": m.StageLatency(p50=1.5, p95=2.0, p99=3.25, count=299)},
    ),
    m.StreamAudio(stream_id="s1", codec="opus", pts=90000, data=b"\xfc\x00", channels=1),
    m.StreamData(stream_id="s1", line='{"text": "hello"}'),
    m.StreamStart(stream_id="s1", config=m.IngestConfig(ring=RING, whip=True, idle_timeout_s=5)),
    m.StreamStart(stream_id="s1", config=m.EgressConfig(ring=RING, whep=True)),
    m.PeerOffer(
        stream_id="s1",
        peer_id="p1",
        request_id="r2",
        role="whip",
        sdp="v=0\r\n",
        ice_servers=[m.IceServer(urls=["turn:t:3478"], username="u", credential="c")],
    ),
    m.PeerCandidates(stream_id="s1", peer_id="p1", request_id="r3", sdpfrag="a=ice-ufrag:x"),
    m.PeerClose(stream_id="s1", peer_id="p1", request_id="r4"),
    m.PeerAnswer(stream_id="s1", peer_id="p1", request_id="r2", status=201, sdp="v=0\r\n"),
    m.PeerGone(stream_id="s1", peer_id="p1", reason="ice failed"),
    m.JobRequest(job_id="j1", kind="comfystream-image", payload=b"\x00\x01{}", want_progress=True),
    m.JobProgress(job_id="j1", data={"node": "3", "index": 1, "total": 4}),
    m.JobResult(job_id="j1", status=400, payload=b"", error="bad image"),
]


def test_samples_cover_every_message_type() -> None:
    assert {type(s) for s in SAMPLES} == set(m.MESSAGE_TYPES)


@pytest.mark.parametrize("message", SAMPLES, ids=lambda s: type(s).__name__)
def test_round_trip(message: Any) -> None:
    decoded = m.decode(m.encode(message))
    assert type(decoded) is type(message)
    assert decoded == message


def test_tags_are_unique_and_on_the_wire() -> None:
    tags = [t.__struct_config__.tag for t in m.MESSAGE_TYPES]
    assert len(tags) == len(set(tags))
    raw = msgspec.msgpack.decode(m.encode(m.Shutdown(reason="x")))
    assert raw["type"] == "shutdown"


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "launch_missiles"},
        {"type": "heartbeat", "worker": "ingest", "seq": "seven", "monotonic_ns": 1},
        {"type": "ready", "pid": 1},
        {"worker": "ingest"},
        [1, 2, 3],
    ],
)
def test_invalid_messages_are_rejected(payload: Any) -> None:
    with pytest.raises(msgspec.ValidationError):
        m.decode(msgspec.msgpack.encode(payload))


def test_a_stream_start_with_an_invalid_ring_is_rejected() -> None:
    raw = msgspec.msgpack.decode(m.encode(SAMPLES[6]))
    raw["config"]["ring"]["slots"] = 0
    with pytest.raises(msgspec.ValidationError, match="slots"):
        m.decode(msgspec.msgpack.encode(raw))


@pytest.mark.parametrize("fmt", m.RING_PIXEL_FORMATS)
def test_every_ring_pixel_format_travels(fmt: str) -> None:
    raw = msgspec.msgpack.decode(m.encode(SAMPLES[6]))
    raw["config"]["ring"]["pixel_format"] = fmt
    decoded = m.decode(msgspec.msgpack.encode(raw))
    assert isinstance(decoded, m.StreamStart)
    assert decoded.config.ring.pixel_format == fmt  # type: ignore[union-attr]


@pytest.mark.parametrize("fmt", ["gray", "RGB24", "yuv444p", ""])
def test_a_ring_pixel_format_outside_the_allowed_set_is_rejected(fmt: str) -> None:
    raw = msgspec.msgpack.decode(m.encode(SAMPLES[6]))
    raw["config"]["ring"]["pixel_format"] = fmt
    with pytest.raises(msgspec.ValidationError, match="pixel_format"):
        m.decode(msgspec.msgpack.encode(raw))


def test_garbage_bytes_are_rejected() -> None:
    with pytest.raises(msgspec.DecodeError):
        m.decode(b"\xc1\xff\x00garbage")


def test_closed_sets_are_checked_when_a_message_is_decoded() -> None:
    good = m.StreamState(stream_id="s", worker="ingest", state="processing")
    assert m.decode(m.encode(good)) == good
    for bad in (
        m.StreamState(stream_id="s", worker="ingest", state="procesing"),  # type: ignore[arg-type]
        m.StreamState(stream_id="s", worker="ingets", state="ended"),  # type: ignore[arg-type]
        m.StreamStats(stream_id="s", worker="infer", dropped={"ring_ful": 1}),  # type: ignore[dict-item]
    ):
        with pytest.raises(msgspec.ValidationError):
            m.decode(m.encode(bad))


def test_infer_options_refuse_unknown_keys_and_engines() -> None:
    options = msgspec.convert({"engine": "builtin", "max_image_side": 64}, m.InferOptions)
    assert (options.engine, options.max_image_side, options.workspace) == ("builtin", 64, "")
    for bad in ({"engine": "bultin"}, {"engnie": "builtin"}, {"max_image_side": "big"}):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(bad, m.InferOptions)


def test_worker_roles() -> None:
    assert m.worker_role("infer") == "infer"
    with pytest.raises(ValueError, match="unknown worker role"):
        m.worker_role("inference")
