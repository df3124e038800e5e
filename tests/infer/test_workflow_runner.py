"""Per-stream pipelines: warm-up, live updates, passthrough of failing frames, resizing."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from infer.engine.builtin import BuiltinEngine
from infer.errors import WorkflowError
from infer.tensors import PixelConverter
from infer.workflow_runner import ENGINE_WARMUP_SIZE, WorkflowRunner, warm_up_engine
from tests.infer.conftest import INVERT, PASSTHROUGH, CountingInvert, chain, rgb_frame

BLUR = chain(("ImageBlur", {"blur_radius": 1, "sigma": 1.0}))


def _pipeline(
    engine: BuiltinEngine, workflow: object, width: int = 16, height: int = 8, **kw: object
) -> WorkflowRunner:
    pipeline = WorkflowRunner(engine, "s1", width, height, **kw)  # type: ignore[arg-type]
    pipeline.start(workflow)
    return pipeline


def test_start_warms_up_on_dummy_frames_of_the_stream_size(test_engine: BuiltinEngine) -> None:
    pipeline = _pipeline(test_engine, chain(("CountingInvert", {})), 24, 12, warmup_frames=4)
    assert CountingInvert.calls == 4 and CountingInvert.frames == 4
    assert pipeline.stats.warmups == 1 and pipeline.stats.frames_in == 0
    assert pipeline.output_size == (24, 12)
    frame = rgb_frame(24, 12)
    (result,) = pipeline.process([frame])
    assert np.array_equal(result.frame, 255 - frame) and not result.failed
    assert result.infer_start_ns <= result.infer_end_ns
    assert CountingInvert.calls == 5


def test_the_engine_says_how_many_warm_up_frames_it_needs(test_engine: BuiltinEngine) -> None:
    _pipeline(test_engine, chain(("CountingInvert", {})))
    assert CountingInvert.calls == 1, "the built-in engine compiles nothing: one frame will do"
    test_engine.warmup_frames = 3  # an engine that compiles or autotunes asks for more
    _pipeline(test_engine, chain(("CountingInvert", {})))
    assert CountingInvert.calls == 1 + 3


def test_start_rejects_invalid_and_failing_workflows(engine: BuiltinEngine) -> None:
    with pytest.raises(WorkflowError) as info:
        _pipeline(engine, chain(("NoSuchNode", {})))
    assert info.value.kinds == {"unknown_node_type"}
    with pytest.raises(WorkflowError) as info:
        _pipeline(
            engine,
            chain(("ImageToMask", {"channel": "alpha"}), ("MaskToImage", {"mask": ["2", 0]})),
        )
    assert info.value.kinds == {"warmup_failed"}
    assert "16x8 rgb24" in str(info.value)


def test_live_update_swaps_between_frames(engine: BuiltinEngine) -> None:
    pipeline = _pipeline(engine, INVERT)
    frame = rgb_frame(16, 8)
    assert np.array_equal(pipeline.process([frame])[0].frame, 255 - frame)
    pipeline.update(json.dumps(PASSTHROUGH))
    assert np.array_equal(pipeline.process([frame])[0].frame, frame)
    assert pipeline.stats.updates_applied == 1 and pipeline.stats.warmups == 2


def test_updates_while_frames_flow_never_mix_workflows(engine: BuiltinEngine) -> None:
    pipeline = _pipeline(engine, INVERT)
    frame = rgb_frame(16, 8)
    outputs: list[np.ndarray] = []
    stop = threading.Event()

    def feed() -> None:
        while not stop.is_set():
            outputs.extend(r.frame.copy() for r in pipeline.process([frame]))

    worker = threading.Thread(target=feed)
    worker.start()
    try:
        for workflow in (PASSTHROUGH, INVERT, PASSTHROUGH, INVERT):
            pipeline.update(workflow)
    finally:
        stop.set()
        worker.join()
    kinds = {
        (
            "invert"
            if np.array_equal(o, 255 - frame)
            else "pass"
            if np.array_equal(o, frame)
            else "mixed"
        )
        for o in outputs
    }
    assert "mixed" not in kinds and pipeline.stats.frames_failed == 0


def test_a_rejected_update_keeps_the_old_workflow_running(engine: BuiltinEngine) -> None:
    pipeline = _pipeline(engine, INVERT)
    frame = rgb_frame(16, 8)
    with pytest.raises(WorkflowError, match="unknown node type"):
        pipeline.update(chain(("Bogus", {})))
    with pytest.raises(WorkflowError) as info:
        pipeline.update(
            chain(("ImageToMask", {"channel": "alpha"}), ("MaskToImage", {"mask": ["2", 0]}))
        )
    assert info.value.kinds == {"warmup_failed"}
    assert np.array_equal(pipeline.process([frame])[0].frame, 255 - frame)
    assert pipeline.stats.updates_rejected == 2 and pipeline.stats.updates_applied == 0
    assert "alpha" in (pipeline.stats.last_error or "")


def test_a_failing_frame_passes_through_unchanged_and_is_counted(
    test_engine: BuiltinEngine,
) -> None:
    pipeline = _pipeline(test_engine, chain(("FailsOnBright", {}), ("ImageInvert", {})))
    dark = rgb_frame(16, 8) // 2
    bright = np.full((8, 16, 3), 250, np.uint8)
    out = np.zeros_like(bright)
    results = pipeline.process(
        [dark, bright, dark], out=[np.zeros_like(dark), out, np.zeros_like(dark)]
    )
    assert [r.failed for r in results] == [False, True, False]
    assert results[1].frame is out and np.array_equal(out, bright)
    assert "node 2 (FailsOnBright) failed: ValueError: too bright" == results[1].error
    assert np.array_equal(results[0].frame, 255 - dark)
    assert pipeline.stats.frames_in == 3 and pipeline.stats.frames_failed == 1
    assert pipeline.stats.last_error == results[1].error


def test_resize_re_creates_the_converter_and_re_warms(engine: BuiltinEngine) -> None:
    pipeline = _pipeline(
        engine, chain(("ImageScaleBy", {"upscale_method": "nearest-exact", "scale_by": 0.5}))
    )
    assert pipeline.output_size == (8, 4)
    pipeline.resize(32, 20)
    assert pipeline.size == (32, 20) and pipeline.output_size == (16, 10)
    (result,) = pipeline.process([rgb_frame(32, 20)])
    assert result.frame.shape == (10, 16, 3) and pipeline.stats.warmups == 2


def test_resize_to_a_size_the_workflow_cannot_handle(engine: BuiltinEngine) -> None:
    pipeline = _pipeline(engine, chain(("ImageBlur", {"blur_radius": 8, "sigma": 1.0})), 32, 32)
    with pytest.raises(WorkflowError, match="4x4"):
        pipeline.resize(4, 4)
    small = rgb_frame(4, 4)
    (result,) = pipeline.process([small])
    assert result.failed and np.array_equal(result.frame, small)


def test_text_outputs_are_collected_per_frame(engine: BuiltinEngine) -> None:
    workflow = chain(("ImageInvert", {}))
    workflow["7"] = {"class_type": "FrameStatistics", "inputs": {"image": ["1", 0], "precision": 3}}
    workflow["8"] = {"class_type": "SaveTextTensor", "inputs": {"data": ["7", 0]}}
    pipeline = _pipeline(engine, workflow)
    black, white = np.zeros((8, 16, 3), np.uint8), np.full((8, 16, 3), 255, np.uint8)
    results = pipeline.process([black, white])
    assert [json.loads(r.texts[0])["mean"] for r in results] == [[0.0] * 3, [1.0] * 3]
    assert np.array_equal(results[1].frame, black)


def test_text_only_workflow_passes_frames_through(engine: BuiltinEngine) -> None:
    workflow = {
        "1": {"class_type": "LoadTensor", "inputs": {}},
        "2": {"class_type": "FrameStatistics", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveTextTensor", "inputs": {"data": ["2", 0]}},
    }
    pipeline = _pipeline(engine, workflow)
    frame = rgb_frame(16, 8)
    (result,) = pipeline.process([frame])
    assert np.array_equal(result.frame, frame) and len(result.texts) == 1 and not result.failed


def test_yuv420p_stream(engine: BuiltinEngine) -> None:
    pipeline = _pipeline(engine, PASSTHROUGH, 16, 8, pixel_format="yuv420p")
    rgb = (rgb_frame(16, 8) // 4 + 96).astype(np.uint8)  # inside the YUV gamut after subsampling
    yuv = PixelConverter(16, 8, "yuv420p").to_frames(PixelConverter(16, 8).to_images([rgb]))[0]
    (result,) = pipeline.process([yuv])
    assert (
        result.frame.shape == (12, 16)
        and np.abs(result.frame.astype(int) - yuv.astype(int)).max() <= 1
    )


def test_processing_before_start_or_after_close_is_an_error(engine: BuiltinEngine) -> None:
    pipeline = WorkflowRunner(engine, "s2", 16, 8)
    with pytest.raises(RuntimeError, match="not started"):
        pipeline.process([rgb_frame(16, 8)])
    pipeline.start(INVERT)
    pipeline.close()
    with pytest.raises(RuntimeError):
        pipeline.process([rgb_frame(16, 8)])
    with pytest.raises(ValueError, match="unknown pixel format"):
        WorkflowRunner(engine, "s3", 16, 8, "rgba")


def test_warm_up_engine_runs_the_engine_once_and_never_raises(
    engine: BuiltinEngine, caplog: pytest.LogCaptureFixture
) -> None:
    runs: list[tuple[int, ...]] = []
    run = engine.run

    def counting_run(prepared, images, **kw):  # type: ignore[no-untyped-def]
        runs.append(tuple(images.shape))
        return run(prepared, images, **kw)

    engine.run = counting_run  # type: ignore[method-assign]
    assert warm_up_engine(engine, "yuv420p") >= 0.0
    size = ENGINE_WARMUP_SIZE
    assert runs == [(1, size, size, 3)] * 2  # its warm-up frame, then one frame as streams run
    bare = BuiltinEngine("cpu", nodes={})  # knows no node: the warm-up fails, the worker goes on
    warm_up_engine(bare, "yuv420p")
    assert "warm-up at start failed" in caplog.text
