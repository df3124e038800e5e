"""The rings' pixel format, chosen per stream from the device the infer worker reported."""

from __future__ import annotations

import pytest

from ipc.ring_format import ring_pixel_format


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        ("cpu", "rgb24"),
        ("CPU", "rgb24"),
        ("cuda", "yuv420p"),
        ("cuda:0", "yuv420p"),
        ("cuda:3", "yuv420p"),
        ("mps", "yuv420p"),
        ("", "yuv420p"),
    ],
)
def test_cpu_inference_gets_rgb24_and_a_gpu_gets_yuv420p(device: str, expected: str) -> None:
    assert ring_pixel_format(device) == expected
