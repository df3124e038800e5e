"""What a live stream reports besides its pictures: status events with live figures (S4) and
text outputs of the workflow on the data channel as JSON lines (S7)."""

from __future__ import annotations

import json

from byoc.livepeer.trickle import TrickleSubscriber
from tests.byoc.harness import Env
from tests.e2e.conftest import INVERT, EventLog, LiveSource, OutputReader, start_stream

STATISTICS = {
    "1": {"class_type": "LoadTensor", "inputs": {}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveTensor", "inputs": {"images": ["2", 0]}},
    "4": {"class_type": "FrameStatistics", "inputs": {"image": ["2", 0], "precision": 3}},
    "5": {"class_type": "SaveTextTensor", "inputs": {"data": ["4", 0]}},
}


async def test_status_events_carry_live_figures_once_media_flows(env: Env) -> None:
    urls = await start_stream(env, "figures", {"workflow": INVERT})
    assert urls is not None
    events = EventLog(urls.events)
    source = LiveSource(urls.publish, audio=False)
    reader = OutputReader(urls.subscribe).start()
    try:
        first = await events.until(lambda e: True)
        assert (first["fps_in"], first["fps_out"], first["latency_ms"]) == (0.0, 0.0, 0.0)
        source.start()
        # The figures' values depend on how busy the machine is (benchmarks/ measures them);
        # here they only have to become live once media flows.
        live = await events.until(
            lambda e: e["fps_in"] > 0 and e["fps_out"] > 0 and e["latency_ms"] > 0, timeout=60
        )
    finally:
        await source.stop()
        await reader.close()
        await events.close()
    assert live["stream_id"] == "figures" and live["state"] == "processing"
    assert reader.frames, "the figures came with real output"


async def test_text_outputs_reach_the_data_channel_as_json_lines(env: Env) -> None:
    urls = await start_stream(env, "texts", {"workflow": STATISTICS})
    assert urls is not None and urls.data is not None
    source = LiveSource(urls.publish, audio=False)
    lines: list[bytes] = []
    source.start()
    try:
        async with TrickleSubscriber(urls.data, start_seq=0, verify_tls=False) as data:
            async for segment in data:
                body = await segment.read_all()
                assert body.endswith(b"\n")
                lines += body.splitlines()
                if len(lines) >= 10:
                    break
    finally:
        await source.stop()
    frames = []
    for line in lines:
        assert len(line) < 64 * 1024
        document = json.loads(line)
        assert document["type"] == "text"
        statistics = json.loads(document["text"])  # FrameStatistics of one inverted frame
        assert (statistics["width"], statistics["height"]) == (256, 256)
        assert len(statistics["mean"]) == 3 and all(0 < m < 1 for m in statistics["mean"])
        frames.append(document["frame"])
    assert frames == sorted(frames) and len(set(frames)) == len(frames)
