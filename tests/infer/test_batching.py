"""Frames of several streams that share a workflow and a size run as one engine call."""

from __future__ import annotations

import numpy as np

from infer.batching import process_frames
from infer.engine.builtin import BuiltinEngine
from infer.workflow_runner import WorkflowRunner
from tests.infer.conftest import CountingInvert, chain, rgb_frame

COUNTED = chain(("ImageBlur", {"blur_radius": 2, "sigma": 1.0}), ("CountingInvert", {}))


def _stream(
    engine: BuiltinEngine, name: str, workflow: dict, width: int = 16, height: int = 8
) -> WorkflowRunner:
    pipeline = WorkflowRunner(engine, name, width, height, warmup_frames=1)
    pipeline.start(workflow)
    return pipeline


def test_batched_streams_get_the_same_pixels_as_one_by_one(test_engine: BuiltinEngine) -> None:
    streams = [_stream(test_engine, f"s{i}", COUNTED) for i in range(3)]
    frames = [rgb_frame(16, 8, seed=i) for i in range(3)]
    alone = [s.process([f])[0].frame.copy() for s, f in zip(streams, frames, strict=True)]
    CountingInvert.calls = CountingInvert.frames = 0
    together = process_frames(list(zip(streams, frames, strict=True)))
    assert CountingInvert.calls == 1 and CountingInvert.frames == 3  # one engine call for three
    for batched, single in zip(together, alone, strict=True):
        assert np.array_equal(batched.frame, single)
    assert [s.stats.frames_in for s in streams] == [2, 2, 2]


def test_different_sizes_or_workflows_run_separately(test_engine: BuiltinEngine) -> None:
    a = _stream(test_engine, "a", COUNTED)
    b = _stream(test_engine, "b", COUNTED, 8, 8)
    c = _stream(test_engine, "c", chain(("CountingInvert", {})))
    CountingInvert.calls = 0
    results = process_frames(
        [
            (a, rgb_frame(16, 8)),
            (b, rgb_frame(8, 8)),
            (c, rgb_frame(16, 8)),
            (a, rgb_frame(16, 8, 1)),
        ]
    )
    assert CountingInvert.calls == 3  # a's two frames together, b alone, c alone
    assert results[1].frame.shape == (8, 8, 3) and not any(r.failed for r in results)


def test_text_workflows_are_not_batched(test_engine: BuiltinEngine) -> None:
    workflow = chain(("CountingInvert", {}))
    workflow["7"] = {"class_type": "FrameStatistics", "inputs": {"image": ["2", 0]}}
    workflow["8"] = {"class_type": "SaveTextTensor", "inputs": {"data": ["7", 0]}}
    a, b = _stream(test_engine, "a", workflow), _stream(test_engine, "b", workflow)
    CountingInvert.calls = 0
    results = process_frames(
        [(a, np.zeros((8, 16, 3), np.uint8)), (b, np.full((8, 16, 3), 255, np.uint8))]
    )
    assert CountingInvert.calls == 2
    assert (
        '"mean":[1.0,1.0,1.0]' in results[0].texts[0]
        and '"mean":[0.0,0.0,0.0]' in results[1].texts[0]
    )


def test_a_failing_frame_in_a_batch_only_fails_itself(test_engine: BuiltinEngine) -> None:
    workflow = chain(("FailsOnBright", {}), ("ImageInvert", {}))
    streams = [_stream(test_engine, f"s{i}", workflow) for i in range(3)]
    dark = rgb_frame(16, 8) // 2
    bright = np.full((8, 16, 3), 255, np.uint8)
    results = process_frames([(streams[0], dark), (streams[1], bright), (streams[2], dark)])
    assert [r.failed for r in results] == [False, True, False]
    assert np.array_equal(results[1].frame, bright) and np.array_equal(results[0].frame, 255 - dark)
    assert [s.stats.frames_failed for s in streams] == [0, 1, 0]


def test_a_workflow_that_changes_the_batch_size_falls_back_to_single_frames(
    engine: BuiltinEngine,
) -> None:
    workflow = {
        "1": {"class_type": "LoadTensor", "inputs": {}},
        "2": {
            "class_type": "EmptyImage",
            "inputs": {"width": 16, "height": 8, "batch_size": 1, "color": 0},
        },
        "3": {
            "class_type": "ImageCompositeMasked",
            "inputs": {
                "destination": ["2", 0],
                "source": ["1", 0],
                "x": 4,
                "y": 0,
                "resize_source": False,
            },
        },
        "4": {"class_type": "SaveTensor", "inputs": {"images": ["3", 0]}},
    }
    a, b = _stream(engine, "a", workflow), _stream(engine, "b", workflow)
    fa, fb = rgb_frame(16, 8, 1), rgb_frame(16, 8, 2)
    results = process_frames([(a, fa), (b, fb)])
    for result, frame in zip(results, (fa, fb), strict=True):
        assert not result.failed
        assert np.array_equal(result.frame[:, 4:], frame[:, :12]) and not result.frame[:, :4].any()
