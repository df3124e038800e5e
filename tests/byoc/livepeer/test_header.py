"""The ``Livepeer`` header codec: what our runner API accepts and refuses."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from byoc.livepeer.header import HeaderError, decode_header, encode_header


def b64(obj: Any) -> str:
    return base64.b64encode(json.dumps(obj).encode()).decode()


def test_round_trip_of_a_client_header() -> None:
    value = encode_header(
        capability="text-reversal",
        timeout_seconds=30,
        request={"a": 1},
        parameters={"b": 2},
        id="j1",
    )
    header = decode_header(value)
    assert header.capability == "text-reversal"
    assert header.timeout_seconds == 30
    assert header.request_json == {"a": 1}
    assert header.parameters_json == {"b": 2}
    assert header.id == "j1"
    assert header.sig == ""


def test_the_minimal_offchain_header_from_the_notes_is_accepted() -> None:
    value = b64(
        {
            "request": "{}",
            "parameters": "{}",
            "capability": "text-reversal",
            "timeout_seconds": 30,
            "sender": "0x0000000000000000000000000000000000000000",
            "sig": "",
            "OrchSearchTimeout": 1000000000,
        }
    )
    header = decode_header(value)
    assert header.extra == {"OrchSearchTimeout": 1000000000}


def test_parameters_may_be_absent() -> None:
    value = b64({"request": "{}", "capability": "x", "timeout_seconds": 1})
    assert decode_header(value).parameters_json is None


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("%%%not base64%%%", "not valid base64"),
        (base64.b64encode(b"{not json").decode(), "not valid JSON"),
        (b64([1, 2]), "must be a JSON object"),
        (b64({"capability": "x", "timeout_seconds": 1}), "request is required"),
        (
            b64({"request": "nope", "capability": "x", "timeout_seconds": 1}),
            "request is not valid JSON",
        ),
        (b64({"request": {}, "capability": "x", "timeout_seconds": 1}), "request must be a string"),
        (
            b64({"request": "{}", "parameters": "", "capability": "x", "timeout_seconds": 1}),
            "parameters is not valid JSON",
        ),
        (b64({"request": "{}", "capability": "x"}), "timeout_seconds is required"),
        (b64({"request": "{}", "capability": "x", "timeout_seconds": 0}), "must be between 1 and"),
        (b64({"request": "{}", "capability": "x", "timeout_seconds": -5}), "must be between 1 and"),
        (b64({"request": "{}", "capability": "x", "timeout_seconds": 1.5}), "must be an integer"),
        (b64({"request": "{}", "capability": "x", "timeout_seconds": "5"}), "must be an integer"),
        (b64({"request": "{}", "capability": "x", "timeout_seconds": True}), "must be an integer"),
        (b64({"request": "{}", "timeout_seconds": 5}), "capability is required"),
        # Deep JSON raised RecursionError and huge numbers OverflowError past these checks.
        (
            base64.b64encode(b"[" * 5000 + b"]" * 5000).decode(),
            "nested deeper than",
        ),
        (
            b64({"request": "[" * 5000 + "]" * 5000, "capability": "x", "timeout_seconds": 1}),
            "request is nested deeper than",
        ),
        (
            b64(
                {"request": "{}", "parameters": "{" * 900, "capability": "x", "timeout_seconds": 1}
            ),
            "parameters is nested deeper than",
        ),
        (
            base64.b64encode(
                b'{"request": "{}", "capability": "x", "timeout_seconds": 1' + b"0" * 400 + b"}"
            ).decode(),
            "out of range|too many digits",
        ),
        (
            b64({"request": "{}", "capability": "x", "timeout_seconds": 10**12}),
            "must be between 1 and",
        ),
        (
            b64({"request": '{"a": 1e400}', "capability": "x", "timeout_seconds": 1}),
            "out of range",
        ),
    ],
)
def test_unusable_headers_are_refused_with_a_reason(value: str, needle: str) -> None:
    with pytest.raises(HeaderError, match=needle):
        decode_header(value)


@settings(deadline=None)  # example count from the profile (tests/conftest.py)
@given(st.text(max_size=200))
def test_arbitrary_text_never_raises_anything_but_header_error(value: str) -> None:
    try:
        decode_header(value)
    except HeaderError:
        pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(deadline=None)  # example count from the profile (tests/conftest.py)
@given(
    st.dictionaries(
        st.sampled_from(["request", "parameters", "capability", "timeout_seconds", "id", "sig"]),
        json_values,
    )
)
def test_arbitrary_json_objects_decode_or_raise_header_error(obj: dict[str, Any]) -> None:
    try:
        header = decode_header(b64(obj))
    except HeaderError:
        return
    assert isinstance(header.timeout_seconds, int) and header.timeout_seconds > 0
    assert isinstance(header.capability, str)
