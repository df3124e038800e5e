"""The ``comfystream-image`` job: one image through one workflow.

Request JSON: ``{"image": "<base64 PNG or JPEG, or a data URL>", "workflow": <API-format
workflow, dict or JSON string>}``; ComfyStream's ``"prompts"`` is accepted in place of
``"workflow"``. The result is the first output image as PNG, with its size and the time taken.
Bad image data, oversize images and invalid workflows raise ``ImageJobError`` (status 400).
"""

from __future__ import annotations

import base64
import binascii
import io
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from infer.engine.base import Engine, ProgressCallback
from infer.errors import InferError, NodeExecutionError, WorkflowError
from infer.image_modes import rgb_array
from infer.tensors import PixelConverter
from infer.workflow.allocation import is_out_of_memory
from ipc.untrusted_json import UntrustedJsonError, loads_untrusted

ACCEPTED_FORMATS = ("PNG", "JPEG")


class ImageJobError(InferError):
    """A job that cannot be done; ``status_code`` is the HTTP status to answer with."""

    def __init__(self, message: str, status_code: int = 400, kind: str = "bad_request") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.kind = kind

    def to_dict(self) -> dict[str, Any]:
        """JSON error body in the project's shape."""
        return {"error": str(self), "status_code": self.status_code, "kind": self.kind}


@dataclass(frozen=True)
class ImageJobLimits:
    """Input limits (configurable; the defaults follow the issue)."""

    max_width: int = 4096
    max_height: int = 4096
    max_request_bytes: int = 64 * 1024 * 1024


@dataclass
class ImageJobResult:
    """The output image and what the HTTP layer answers with."""

    png: bytes
    width: int
    height: int
    elapsed_ms: float
    texts: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """``{"image": base64 PNG, "width", "height", "elapsed_ms"}`` (+ ``"text"`` if any)."""
        body: dict[str, Any] = {
            "image": base64.b64encode(self.png).decode("ascii"),
            "width": self.width,
            "height": self.height,
            "elapsed_ms": round(self.elapsed_ms, 3),
        }
        if self.texts:
            body["text"] = self.texts
        return body


def parse_request(body: bytes | str | Mapping[str, Any], limits: ImageJobLimits) -> dict[str, Any]:
    """The request as a dict; raises ``ImageJobError`` for non-JSON or oversize bodies."""
    if isinstance(body, Mapping):
        return dict(body)
    if len(body) > limits.max_request_bytes:
        raise ImageJobError(
            f"request of {len(body)} bytes exceeds the limit of {limits.max_request_bytes}",
            status_code=413,
            kind="too_large",
        )
    try:
        parsed = loads_untrusted(body, what="request body", max_bytes=limits.max_request_bytes)
    except UntrustedJsonError as exc:
        raise ImageJobError(str(exc), kind="bad_json") from None
    if not isinstance(parsed, dict):
        raise ImageJobError("request body must be a JSON object", kind="bad_json")
    return parsed


def decode_image(data: Any, limits: ImageJobLimits) -> np.ndarray:
    """Decode a base64 PNG/JPEG (or data URL) into ``(H, W, 3)`` uint8 RGB."""
    if not isinstance(data, str) or not data.strip():
        raise ImageJobError("'image' must be a non-empty base64 string", kind="bad_image")
    text = data.strip()
    if text.startswith("data:"):
        header, sep, text = text.partition(",")
        if not sep or ";base64" not in header:
            raise ImageJobError("'image' data URL must be base64-encoded", kind="bad_image")
    try:
        raw = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ImageJobError("'image' is not valid base64", kind="bad_image") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw))
            if image.format not in ACCEPTED_FORMATS:
                raise ImageJobError(
                    f"unsupported image format {image.format}; send PNG or JPEG", kind="bad_image"
                )
            width, height = image.size
            if width > limits.max_width or height > limits.max_height:
                raise ImageJobError(
                    f"image of {width}x{height} exceeds the limit of "
                    f"{limits.max_width}x{limits.max_height}",
                    kind="too_large",
                )
            image.load()
    except ImageJobError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageJobError("image is too large to decode", kind="too_large") from None
    except Exception as exc:
        raise ImageJobError(
            f"'image' is not a readable PNG or JPEG: {exc}", kind="bad_image"
        ) from None
    upright: Image.Image = ImageOps.exif_transpose(image) or image
    return rgb_array(upright)  # writable: torch shares it


def encode_png(pixels: np.ndarray) -> bytes:
    """``(H, W, 3)`` uint8 to PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="PNG", compress_level=4)
    return buffer.getvalue()


def run_image_job(
    engine: Engine,
    body: bytes | str | Mapping[str, Any],
    *,
    limits: ImageJobLimits | None = None,
    progress: ProgressCallback | None = None,
) -> ImageJobResult:
    """Decode the image, run the workflow once, encode the first output image as PNG.

    ``progress`` is called once per executed node ``(node_id, class_type, index, total)``.
    Blocking; raises ``ImageJobError`` (400 for the client's mistakes, 500 when a node fails).
    """
    limits = limits or ImageJobLimits()
    started = time.perf_counter()
    request = parse_request(body, limits)
    if "image" not in request:
        raise ImageJobError("missing 'image'", kind="bad_request")
    source = request.get("workflow") if request.get("prompts") is None else request["prompts"]
    if source is None:
        raise ImageJobError("missing 'workflow' (or 'prompts')", kind="bad_workflow")
    pixels = decode_image(request["image"], limits)
    try:
        prepared = engine.prepare(source)
    except WorkflowError as exc:
        raise ImageJobError(str(exc), kind="bad_workflow") from exc
    height, width = pixels.shape[:2]
    converter = PixelConverter(width, height, "rgb24", engine.device)
    with torch.inference_mode():
        images = converter.to_images([pixels])
    try:
        result = engine.run(prepared, images, progress=progress)
    except NodeExecutionError as exc:
        if is_out_of_memory(exc):
            raise ImageJobError(
                f"not enough memory to run this workflow ({exc})",
                status_code=503,
                kind="out_of_memory",
            ) from exc
        raise ImageJobError(str(exc), status_code=500, kind="execution_failed") from exc
    output = pixels if result.images is None else converter.to_frames(result.images[:1])[0]
    png = encode_png(np.ascontiguousarray(output))
    return ImageJobResult(
        png=png,
        width=int(output.shape[1]),
        height=int(output.shape[0]),
        elapsed_ms=(time.perf_counter() - started) * 1e3,
        texts=result.texts,
    )
