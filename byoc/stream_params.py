"""Checks on stream parameters (``/stream/start`` ``params``, ``/stream/params`` bodies, control
messages) that the parent can make without the media path: shape and sizes.

Workflows (``prompts``/``workflow``) are validated by the infer worker; the parent passes them on.
"""

from __future__ import annotations

from typing import Any

from byoc.media_path import ParamsRejected

MAX_FRAMERATE = 60
MIN_OUTPUT_SIDE = 16
"""Smallest output width or height; the largest is the ``--max-image-side`` setting."""


def check_params(params: Any, *, max_side: int) -> dict[str, Any]:
    """Return ``params`` as a dict (``None`` -> empty) or raise ``ParamsRejected``.

    The one home of the output-size rule: ``width`` and ``height`` both or neither, integers in
    ``MIN_OUTPUT_SIDE..max_side``."""
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ParamsRejected("params must be a JSON object")
    has_width, has_height = "width" in params, "height" in params
    if has_width != has_height:
        raise ParamsRejected("params: width and height must be given together")
    if has_width:
        for key in ("width", "height"):
            value = params[key]
            if isinstance(value, bool) or not isinstance(value, int):
                raise ParamsRejected(f"params: {key} must be an integer")
            if not MIN_OUTPUT_SIDE <= value <= max_side:
                raise ParamsRejected(
                    f"params: {key} must be between {MIN_OUTPUT_SIDE} and {max_side}"
                )
    if "max_framerate" in params:
        rate = params["max_framerate"]
        if isinstance(rate, bool) or not isinstance(rate, (int, float)):
            raise ParamsRejected("params: max_framerate must be a number")
        if not 1 <= rate <= MAX_FRAMERATE:
            raise ParamsRejected(f"params: max_framerate must be between 1 and {MAX_FRAMERATE}")
    return dict(params)


def output_size(params: dict[str, Any], *, max_side: int) -> tuple[int, int]:
    """The output size ``params`` ask for, checked by ``check_params``; ``(0, 0)``: the input's."""
    checked = check_params(params, max_side=max_side)
    if "width" not in checked:
        return 0, 0
    return int(checked["width"]), int(checked["height"])
