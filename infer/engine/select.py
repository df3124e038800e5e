"""Choosing the engine at worker start: ``--engine auto|builtin|comfyui`` (env ``COMFY_ENGINE``)."""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from infer.engine.base import Engine
from infer.engine.builtin import BuiltinEngine
from infer.errors import EngineUnavailableError
from ipc.messages import ENGINE_NAMES

log = logging.getLogger(__name__)


def comfyui_importable() -> tuple[bool, str]:
    """Whether ComfyUI's embedded client imports here, and why not when it does not."""
    from infer.engine import comfyui_compat

    try:
        comfyui_compat.import_client_module()
        return True, f"ComfyUI {comfyui_compat.comfy_version()}"
    except Exception as exc:  # an incomplete install can fail with anything, not only ImportError
        return False, f"{type(exc).__name__}: {exc}"


def select_engine(
    name: str | None = None,
    workspace: str | os.PathLike[str] | None = None,
    *,
    device: torch.device | str | None = None,
    comfyui_configuration: dict[str, Any] | None = None,
) -> Engine:
    """Start the engine named by ``name`` (or ``$COMFY_ENGINE``, default ``auto``).

    ``auto`` uses real ComfyUI when it is importable and the built-in engine otherwise, and logs
    which. ``comfyui`` without ComfyUI raises ``EngineUnavailableError`` (never a silent
    fallback). ``workspace`` (or ``$WORKSPACE``, default the current directory) is ComfyUI's
    working directory: models, custom_nodes, input.
    """
    choice = (name or os.environ.get("COMFY_ENGINE") or "auto").strip().lower()
    if choice not in ENGINE_NAMES:
        raise EngineUnavailableError(
            f"unknown engine {choice!r}; choose one of {', '.join(ENGINE_NAMES)}"
        )
    if choice == "builtin":
        engine: Engine = BuiltinEngine(device)
        log.info("inference engine: builtin (requested), device=%s", engine.device)
        return engine
    available, detail = comfyui_importable()
    if not available:
        if choice == "comfyui":
            raise EngineUnavailableError(
                f"engine 'comfyui' requested but ComfyUI cannot be imported ({detail}); install "
                "it (see README) or choose --engine builtin"
            )
        engine = BuiltinEngine(device)
        log.info(
            "inference engine: builtin (auto: ComfyUI not importable: %s), device=%s",
            detail,
            engine.device,
        )
        return engine
    from infer.engine.comfyui import ComfyUIEngine

    root = os.fspath(workspace or os.environ.get("WORKSPACE") or os.getcwd())
    engine = ComfyUIEngine(root, device=device, configuration=comfyui_configuration)
    log.info(
        "inference engine: comfyui (%s: %s), workspace=%s, device=%s",
        "requested" if choice == "comfyui" else "auto",
        detail,
        root,
        engine.device,
    )
    return engine
