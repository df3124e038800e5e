"""Collapsed stacks to top frames and a flame graph: the numbers the profile findings quote."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from benchmarks.latency.flamegraph import parse_collapsed, render_svg, top_frames

RAW = """\
run (asyncio/runners.py:86);_frame (egress/stream.py:232);encode (egress/encode.py:137) 70
run (asyncio/runners.py:86);_frame (egress/stream.py:232);video_frame_of (egress/stream.py:62) 10
run (asyncio/runners.py:86);publish (egress/publish.py:40);write (aiohttp/http_writer.py:97) 15
run (asyncio/runners.py:86) 5
not a stack line
run (asyncio/runners.py:86);_frame (egress/stream.py:232);encode (egress/encode.py:137) 0
"""


def test_collapsed_lines_are_summed_per_stack() -> None:
    stacks = parse_collapsed(RAW + RAW)
    assert sum(stacks.values()) == 200
    assert stacks[("run (asyncio/runners.py:86)",)] == 10


def test_top_frames_rank_own_time_and_give_totals() -> None:
    top = top_frames(parse_collapsed(RAW), n=3)
    assert [t.frame for t in top] == [
        "encode (egress/encode.py:137)",
        "write (aiohttp/http_writer.py:97)",
        "video_frame_of (egress/stream.py:62)",
    ]
    assert top[0].own == pytest.approx(0.70) and top[0].total == pytest.approx(0.70)
    everything = {t.frame: t for t in top_frames(parse_collapsed(RAW), n=10)}
    assert "_frame (egress/stream.py:232)" not in everything  # never the running frame
    assert everything["run (asyncio/runners.py:86)"].own == pytest.approx(0.05)
    assert everything["run (asyncio/runners.py:86)"].total == pytest.approx(1.0)
    assert top_frames({}) == []


def test_flame_graph_is_svg_with_a_box_per_frame_sized_by_its_share() -> None:
    svg = render_svg(parse_collapsed(RAW), "egress x4")
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    titles = [t.text or "" for t in root.iter(f"{ns}title")]
    assert any(t.startswith("encode (egress/encode.py:137) (70 samples, 70.0%)") for t in titles)
    widths = {
        (g.find(f"{ns}title").text or "").split(" (")[0]: float(g.find(f"{ns}rect").get("width"))
        for g in root.iter(f"{ns}g")
    }
    assert widths["all"] > widths["_frame"] > widths["encode"] > widths["video_frame_of"]
    assert widths["encode"] == pytest.approx(1200 * 0.70 - 0.5)
