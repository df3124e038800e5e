"""``ipc.untrusted_json``: whatever the input, a parsed value within the limits or an
``UntrustedJsonError``; never ``RecursionError``, ``OverflowError`` or a non-finite number."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipc.untrusted_json import (
    DEFAULT_MAX_DEPTH,
    UntrustedJsonError,
    loads_untrusted,
    nesting_depth,
)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ("[" * 5000 + "]" * 5000, "nested deeper than 64"),
        ('{"a":' * 100 + "1" + "}" * 100, "nested deeper than 64"),
        ("[" * 100_000, "nested deeper"),
        ("1e400", "out of range"),
        ("-1e400", "out of range"),
        ("[NaN]", "does not allow NaN"),
        ('{"x": Infinity}', "does not allow Infinity"),
        ("1" + "0" * 400, "too many digits"),
        (str(2**64), "out of range"),
        ("{oops", "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        ("", "not valid JSON"),
    ],
)
def test_unusable_input_is_one_error_type(data: str | bytes, needle: str) -> None:
    with pytest.raises(UntrustedJsonError, match=needle):
        loads_untrusted(data)


def test_limits_are_the_callers() -> None:
    assert loads_untrusted("[[[1]]]", max_depth=3) == [[[1]]]
    with pytest.raises(UntrustedJsonError, match="deeper than 2"):
        loads_untrusted("[[[1]]]", max_depth=2)
    with pytest.raises(UntrustedJsonError, match="body is larger than 4 bytes"):
        loads_untrusted(b'"12345"', what="body", max_bytes=4)


def test_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps({"a": "[[[[{{{{" * 100, "b": ['\\"[[[', "]]]"]})
    assert nesting_depth(text, 64) == 2
    assert loads_untrusted(text)["b"][0] == '\\"[[['


def test_ordinary_documents_parse_as_json_loads_does() -> None:
    doc = {"a": [1, -2.5, True, None, "x\u00e9"], "b": {"c": 2**63, "d": -(2**63), "e": 1e300}}
    text = json.dumps(doc)
    assert loads_untrusted(text) == doc
    assert loads_untrusted(text.encode()) == doc
    assert loads_untrusted(b"\xef\xbb\xbf" + text.encode()) == doc
    assert loads_untrusted(memoryview(text.encode())) == doc


@given(st.text(max_size=200) | st.binary(max_size=200))
def test_arbitrary_input_never_raises_anything_else(data: str | bytes) -> None:
    try:
        loads_untrusted(data)
    except UntrustedJsonError:
        pass


def _walk(value: Any, depth: int = 1) -> int:
    if isinstance(value, float):
        assert math.isfinite(value)
    if isinstance(value, int) and not isinstance(value, bool):
        assert abs(value) <= 2**63
    if isinstance(value, dict):
        return max([depth, *(_walk(v, depth + 1) for v in value.values())])
    if isinstance(value, list):
        return max([depth, *(_walk(v, depth + 1) for v in value)])
    return depth - 1


@given(st.integers(min_value=1, max_value=300), st.sampled_from(["[", '{"k":']))
def test_depth_at_the_limit_parses_and_one_more_does_not(depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    text = opener * depth + "0" + closer * depth
    if depth <= DEFAULT_MAX_DEPTH:
        assert _walk(loads_untrusted(text)) == depth
    else:
        with pytest.raises(UntrustedJsonError):
            loads_untrusted(text)
