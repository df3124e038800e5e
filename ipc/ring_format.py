"""Which pixel format a stream's rings carry, chosen from the infer worker's device.

Colour conversion costs more than H.264 encoding at these sizes, so it happens once, where it is
cheapest. Inference on the CPU: ``rgb24`` rings; ingest converts with FFmpeg's swscale as it
decodes and egress converts back before encoding, each in its own process, so infer only turns
uint8 into floats and back. Inference on a GPU: ``yuv420p`` rings (half the bytes of rgb24 to copy
and upload) and infer converts on the GPU.
"""

from __future__ import annotations

from ipc.pixfmt import RingPixelFormat

CPU_RING_FORMAT: RingPixelFormat = "rgb24"
GPU_RING_FORMAT: RingPixelFormat = "yuv420p"


def ring_pixel_format(device: str) -> RingPixelFormat:
    """The ring format for streams run by an infer worker on ``device`` (what it reported when it
    started: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``...). Unknown or empty: the GPU's
    format, which every engine reads and which is the smaller one."""
    kind = device.strip().lower().split(":", 1)[0]
    return CPU_RING_FORMAT if kind == "cpu" else GPU_RING_FORMAT
