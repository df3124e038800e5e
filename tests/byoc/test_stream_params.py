"""Stream parameter checks: the one output-size rule."""

from __future__ import annotations

import pytest

from byoc.media_path import ParamsRejected
from byoc.stream_params import MIN_OUTPUT_SIDE, check_params, output_size


def test_output_size_is_both_or_neither_within_the_one_range() -> None:
    assert output_size({}, max_side=4096) == (0, 0)
    assert output_size({"width": 16, "height": 4096}, max_side=4096) == (16, 4096)
    for bad in (
        {"width": MIN_OUTPUT_SIDE - 1, "height": 64},
        {"width": 64, "height": 4097},
        {"width": 64},
        {"width": True, "height": 64},
        {"width": "64", "height": 64},
    ):
        with pytest.raises(ParamsRejected):
            output_size(bad, max_side=4096)
    with pytest.raises(ParamsRejected, match="between 16 and 100"):
        check_params({"width": 200, "height": 64}, max_side=100)
