"""Which input frame an output picture is, from its counter, plain or inverted."""

from __future__ import annotations

import pytest

from byoc.smoke.pattern import COUNTER_MODULO
from byoc.smoke.sink import frame_index, guess_inverted


@pytest.mark.parametrize("index", [0, 1, 17, 299, 2047, 2048, 4095, 4096, 5000, 9000])
def test_counter_maps_to_the_frame_near_the_clock(index: int) -> None:
    value = index % COUNTER_MODULO
    inverted = COUNTER_MODULO - 1 - value
    # The clock suggests a frame a little later than the one shown (latency).
    assert frame_index(value, index + 3.5) == index
    assert frame_index(inverted, index + 3.5, inverted=True) == index


@pytest.mark.parametrize("index", [0, 5, 300, 1500, 2600, 3900])
def test_orientation_is_guessed_from_the_clock(index: int) -> None:
    value = index % COUNTER_MODULO
    assert guess_inverted(value, index + 2.0) is False
    assert guess_inverted(COUNTER_MODULO - 1 - value, index + 2.0) is True


def test_orientation_is_left_open_where_both_readings_are_close() -> None:
    assert guess_inverted(2047, 2049.0) is None  # the middle of the counter
    assert guess_inverted(4, 4102.0) is None  # just after it wraps
