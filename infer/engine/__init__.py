"""Inference engines: the built-in torch executor and real ComfyUI, behind one interface."""

from __future__ import annotations

from infer.engine.base import Engine, PreparedWorkflow, ProgressCallback, RunResult
from infer.engine.builtin import BuiltinEngine
from infer.engine.select import comfyui_importable, select_engine

__all__ = [
    "BuiltinEngine",
    "Engine",
    "PreparedWorkflow",
    "ProgressCallback",
    "RunResult",
    "comfyui_importable",
    "select_engine",
]
