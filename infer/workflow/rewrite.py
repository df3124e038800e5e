"""Rewriting editor and ComfyStream I/O nodes into the project's frame and text nodes.

Workflows exported from the ComfyUI editor read a picture with ``LoadImage`` (or ComfyStream's
``PrimaryInputLoadImage`` marker) and show results with ``PreviewImage``/``SaveImage``; ComfyStream
workflows use ``LoadTensor``/``SaveTensor``/``SaveTextTensor``. On a stream they all mean "the live
frame" and "the processed frame", so they become ``ByocLoadFrame``, ``ByocSaveFrame`` and
``ByocSaveText``, which both engines provide. Rules (as ComfyStream applies them):

- every ``PrimaryInputLoadImage`` and ``LoadTensor`` becomes the frame input;
- without one, a single ``LoadImage`` becomes the frame input (several are ambiguous: an error);
- every ``PreviewImage``, ``SaveImage`` and ``SaveTensor`` becomes the frame output;
- ``SaveTextTensor`` becomes the text output.
"""

from __future__ import annotations

from typing import Any

from infer.errors import WorkflowError, WorkflowProblem
from infer.workflow.source import Prompt

FRAME_INPUT = "ByocLoadFrame"
FRAME_OUTPUT = "ByocSaveFrame"
TEXT_OUTPUT = "ByocSaveText"

# The per-run key the engine writes into every I/O node (see ``infer.exchange``).
RUN_ID_INPUT = "run_id"

_PRIMARY_INPUTS = {"PrimaryInputLoadImage", "LoadTensor", FRAME_INPUT}
_FRAME_OUTPUTS = {"PreviewImage", "SaveImage", "SaveTensor", FRAME_OUTPUT}
_TEXT_OUTPUTS = {"SaveTextTensor", TEXT_OUTPUT}


def rewrite_io_nodes(prompt: Prompt) -> Prompt:
    """Return a copy of ``prompt`` with its I/O nodes replaced by the project's frame nodes."""
    out: Prompt = {nid: {**node, "inputs": dict(node["inputs"])} for nid, node in prompt.items()}
    primaries = [nid for nid, n in out.items() if n["class_type"] in _PRIMARY_INPUTS]
    load_images = [nid for nid, n in out.items() if n["class_type"] == "LoadImage"]
    frame_inputs = list(primaries)
    if not primaries:
        if len(load_images) > 1:
            raise WorkflowError(
                WorkflowProblem(
                    "ambiguous_input",
                    f"{len(load_images)} LoadImage nodes ({', '.join(load_images)}) and no "
                    "frame input: mark the one that receives the stream with "
                    "PrimaryInputLoadImage (or use LoadTensor)",
                )
            )
        frame_inputs = load_images
    for nid in frame_inputs:
        out[nid] = _io_node(out[nid], FRAME_INPUT, {})
    for nid, node in out.items():
        cls = node["class_type"]
        if cls in _FRAME_OUTPUTS:
            inputs = {"images": node["inputs"]["images"]} if "images" in node["inputs"] else {}
            out[nid] = _io_node(node, FRAME_OUTPUT, inputs)
        elif cls in _TEXT_OUTPUTS:
            src = node["inputs"]
            inputs = {}
            # ComfyStream's versions name the text input "data" (current) or "text" (older).
            if "data" in src:
                inputs["data"] = src["data"]
            elif "text" in src:
                inputs["data"] = src["text"]
            if "remove_linebreaks" in src:
                inputs["remove_linebreaks"] = src["remove_linebreaks"]
            out[nid] = _io_node(node, TEXT_OUTPUT, inputs)
    return out


def _io_node(node: dict[str, Any], class_type: str, inputs: dict[str, Any]) -> dict[str, Any]:
    new: dict[str, Any] = {"class_type": class_type, "inputs": {**inputs, RUN_ID_INPUT: ""}}
    if "_meta" in node:
        new["_meta"] = node["_meta"]
    return new
