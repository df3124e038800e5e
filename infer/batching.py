"""Running frames of several streams together.

Frames whose streams run the same workflow (same prompt digest) on the same engine, at the same
size and pixel format, are uploaded as one batch, run in one engine call and split again.
Workflows with text outputs, or with nodes not known to treat batch items independently, run
one frame per call. If a batched call fails or does not return one image per frame, its frames
are retried one by one, so only a frame the workflow really fails on passes through.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Sequence

import numpy as np
import torch

from infer.errors import InferError
from infer.run_state import ActiveWorkflow, BatchMember, FrameResult
from infer.tensors import Pixels


class _BatchMismatch(Exception):
    pass


def process_frames(
    requests: Sequence[tuple[BatchMember, Pixels]],
    out: Sequence[np.ndarray | None] | None = None,
) -> list[FrameResult]:
    """Run each ``(pipeline, frame)``; results in request order, counted in each pipeline.

    ``out`` optionally gives a destination array per request (``None`` entries allowed).
    Call it from one thread at a time (the worker's inference thread); ``update``/``resize``
    of the pipelines may run in other threads meanwhile.
    """
    actives = [
        pipeline.active for pipeline, _ in requests
    ]  # one snapshot: swaps land between calls
    groups: dict[Hashable, list[int]] = {}
    for i, ((pipeline, _), active) in enumerate(zip(requests, actives, strict=True)):
        groups.setdefault(_group_key(pipeline, active, i), []).append(i)
    results: list[FrameResult | None] = [None] * len(requests)
    with torch.inference_mode():
        for members in groups.values():
            _run_group(members, requests, actives, out, results)
    final = [r for r in results if r is not None]
    assert len(final) == len(requests)
    for (pipeline, _), result in zip(requests, final, strict=True):
        pipeline.record(result)
    return final


def batch_key(pipeline: BatchMember) -> Hashable:
    """What frames must share to run in one engine call (unique for a workflow that must run
    alone)."""
    return _group_key(pipeline, pipeline.active, id(pipeline))


def _group_key(pipeline: BatchMember, active: ActiveWorkflow, alone: int) -> Hashable:
    conv = active.converter
    if not active.prepared.batchable:
        return ("alone", alone)
    return (
        id(pipeline.engine),
        active.prepared.key,
        conv.width,
        conv.height,
        conv.pixel_format,
        conv.colorspace,
    )


def _run_group(
    members: list[int],
    requests: Sequence[tuple[BatchMember, Pixels]],
    actives: list[ActiveWorkflow],
    out: Sequence[np.ndarray | None] | None,
    results: list[FrameResult | None],
) -> None:
    started = time.monotonic_ns()
    lead = actives[members[0]]
    frames = [requests[i][1] for i in members]
    targets = [out[i] if out is not None else None for i in members]
    try:
        images = lead.converter.to_images(frames)
        result = lead.prepared.engine.run(lead.prepared, images)
        output = result.images
        if output is not None and output.shape[0] != len(members):
            if len(members) > 1:
                raise _BatchMismatch(f"{output.shape[0]} images for {len(members)} frames")
            output = output[:1]
        if output is None:
            pixels = [_passthrough(f, t) for f, t in zip(frames, targets, strict=True)]
            size = (lead.converter.width, lead.converter.height)
        else:
            pixels = lead.converter.to_frames(output, out=_all_or_none(targets))
            size = (int(output.shape[2]), int(output.shape[1]))
    except Exception as exc:
        if len(members) > 1:
            for i in members:
                _run_group([i], requests, actives, out, results)
            return
        frame, target = frames[0], targets[0]
        results[members[0]] = FrameResult(
            frame=_passthrough(frame, target),
            width=lead.converter.width,
            height=lead.converter.height,
            failed=True,
            error=str(exc) if isinstance(exc, InferError) else f"{type(exc).__name__}: {exc}",
            infer_start_ns=started,
            infer_end_ns=time.monotonic_ns(),
        )
        return
    ended = time.monotonic_ns()
    texts = result.texts if len(members) == 1 else []
    for i, pixel in zip(members, pixels, strict=True):
        results[i] = FrameResult(
            frame=pixel,
            width=size[0],
            height=size[1],
            texts=list(texts),
            infer_start_ns=started,
            infer_end_ns=ended,
        )


def _all_or_none(targets: list[np.ndarray | None]) -> list[np.ndarray] | None:
    if any(t is None for t in targets):
        return None
    return [t for t in targets if t is not None]


def _passthrough(frame: Pixels, target: np.ndarray | None) -> np.ndarray:
    """The input frame unchanged (copied into ``target`` when one is given and fits)."""
    if isinstance(frame, (list, tuple)):
        arr = np.concatenate([np.asarray(p, dtype=np.uint8).reshape(-1) for p in frame])
    else:
        arr = np.asarray(frame)
    if target is not None and target.size == arr.size and target.dtype == arr.dtype:
        np.copyto(target, arr.reshape(target.shape))
        return target
    return arr
