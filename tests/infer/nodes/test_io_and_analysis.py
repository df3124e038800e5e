"""The frame I/O nodes (through the run exchange) and FrameStatistics."""

from __future__ import annotations

import json

import pytest
import torch

from infer.exchange import EXCHANGE, RunExchange
from infer.nodes.analysis import FrameStatistics
from infer.nodes.io import ByocLoadFrame, ByocSaveFrame, ByocSaveText
from infer.nodes.mask import MaskToImage, SolidMask


def test_io_nodes_read_and_write_their_own_run() -> None:
    a = EXCHANGE.open(torch.zeros(1, 2, 2, 3))
    b = EXCHANGE.open(torch.ones(1, 2, 2, 3))
    try:
        (frame_a,) = ByocLoadFrame().load(a.run_id)
        (frame_b,) = ByocLoadFrame().load(b.run_id)
        assert float(frame_a.sum()) == 0 and float(frame_b.sum()) == 12
        ByocSaveFrame().save(frame_b, b.run_id)
        ByocSaveText().save("line\nbreak", b.run_id)
        ByocSaveText().save("kept\n", b.run_id, remove_linebreaks=False)
        assert a.output is None and b.output is frame_b
        assert b.texts == ["linebreak", "kept\n"] and a.texts == []
    finally:
        EXCHANGE.close(a.run_id)
        EXCHANGE.close(b.run_id)
    with pytest.raises(LookupError, match="no frame for run"):
        ByocLoadFrame().load(a.run_id)


def test_run_ids_are_unique_and_closing_is_idempotent() -> None:
    exchange = RunExchange()
    ids = {exchange.open(None).run_id for _ in range(100)}
    assert len(ids) == 100 and len(exchange) == 100
    for run_id in ids:
        exchange.close(run_id)
        exchange.close(run_id)
    assert len(exchange) == 0


def test_frame_statistics_json() -> None:
    (mask,) = SolidMask().solid(0.5, width=4, height=2)
    (grey,) = MaskToImage().mask_to_image(mask)
    image = grey.clone()
    image[0, 0, 0] = torch.tensor([0.0, 1.0, 0.25])
    (text,) = FrameStatistics().statistics(image, precision=3)
    stats = json.loads(text)
    assert stats["frames"] == 1 and stats["width"] == 4 and stats["height"] == 2
    assert stats["min"] == [0.0, 0.5, 0.25] and stats["max"] == [0.5, 1.0, 0.5]
    assert stats["mean"] == [
        round(0.5 * 7 / 8, 3),
        round((0.5 * 7 + 1) / 8, 3),
        round((0.5 * 7 + 0.25) / 8, 3),
    ]
