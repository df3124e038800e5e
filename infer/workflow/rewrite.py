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

# The one list of node names that mean "the live frame" and "the processed frame".
PRIMARY_INPUT_NODES = frozenset({"PrimaryInputLoadImage", "LoadTensor", FRAME_INPUT})
FALLBACK_INPUT_NODE = "LoadImage"
"""The frame input when a workflow has no primary input node (and only one of these)."""
FRAME_OUTPUT_NODES = frozenset({"PreviewImage", "SaveImage", "SaveTensor", FRAME_OUTPUT})
TEXT_OUTPUT_NODES = frozenset({"SaveTextTensor", TEXT_OUTPUT})


def frame_input_ids(prompt: Prompt) -> list[str]:
    """Ids of the nodes that receive the live frame: the primary inputs, else every
    ``LoadImage`` (more than one is ambiguous; ``rewrite_io_nodes`` refuses that)."""
    primaries = [nid for nid, n in prompt.items() if n["class_type"] in PRIMARY_INPUT_NODES]
    if primaries:
        return primaries
    return [nid for nid, n in prompt.items() if n["class_type"] == FALLBACK_INPUT_NODE]


def frame_output_ids(prompt: Prompt) -> list[str]:
    """Ids of the nodes whose image is the processed frame."""
    return [nid for nid, n in prompt.items() if n["class_type"] in FRAME_OUTPUT_NODES]


def rewrite_io_nodes(prompt: Prompt) -> Prompt:
    """Return a copy of ``prompt`` with its I/O nodes replaced by the project's frame nodes."""
    out: Prompt = {nid: {**node, "inputs": dict(node["inputs"])} for nid, node in prompt.items()}
    primaries = [nid for nid, n in out.items() if n["class_type"] in PRIMARY_INPUT_NODES]
    load_images = [nid for nid, n in out.items() if n["class_type"] == FALLBACK_INPUT_NODE]
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
        if cls in FRAME_OUTPUT_NODES:
            inputs = {"images": node["inputs"]["images"]} if "images" in node["inputs"] else {}
            out[nid] = _io_node(node, FRAME_OUTPUT, inputs)
        elif cls in TEXT_OUTPUT_NODES:
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
