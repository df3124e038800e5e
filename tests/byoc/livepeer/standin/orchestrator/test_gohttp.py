"""The stand-in's reading of the ``Livepeer`` header, with go-livepeer's orchestrator rules."""

from __future__ import annotations

import base64
import json

import pytest

from byoc.livepeer.standin.orchestrator.gohttp import BadJobRequest, go_int, parse_job_header


def b64(obj: object) -> str:
    return base64.b64encode(json.dumps(obj).encode()).decode()


def test_the_minimal_offchain_header() -> None:
    job = parse_job_header(
        b64(
            {
                "request": "{}",
                "parameters": "{}",
                "capability": "c",
                "timeout_seconds": 30,
                "sig": "",
            }
        )
    )
    assert (job.capability, job.timeout_seconds, job.stream_id) == ("c", 30, "")


def test_stream_id_comes_from_request() -> None:
    job = parse_job_header(
        b64({"request": '{"stream_id": "abc"}', "capability": "c", "timeout_seconds": 1})
    )
    assert job.stream_id == "abc"


@pytest.mark.parametrize(
    "obj",
    [
        {"request": "{}", "capability": "c"},  # no timeout
        {"request": "{}", "capability": "c", "timeout_seconds": 0},
        {"request": "{}", "capability": "c", "timeout_seconds": 1.5},
        {"request": "", "capability": "c", "timeout_seconds": 1},  # empty request is not JSON
        {"request": "[]", "capability": "c", "timeout_seconds": 1},
        {"request": '{"stream_id": 5}', "capability": "c", "timeout_seconds": 1},
        {"request": "{}", "capability": "c", "timeout_seconds": 1, "sig": "0x"},
        {"request": "{}", "capability": 7, "timeout_seconds": 1},
    ],
)
def test_refused(obj: object) -> None:
    with pytest.raises(BadJobRequest):
        parse_job_header(b64(obj))


def test_not_base64_and_missing() -> None:
    for value in (None, "", "***"):
        with pytest.raises(BadJobRequest):
            parse_job_header(value)


def test_negative_timeouts_pass_as_in_go() -> None:
    assert (
        parse_job_header(
            b64({"request": "{}", "capability": "c", "timeout_seconds": -1})
        ).timeout_seconds
        == -1
    )


def test_go_int() -> None:
    assert go_int(5, "k", "S") == 5
    for bad in (True, 1.0, "1", 2**63, None):
        with pytest.raises(ValueError):
            go_int(bad, "k", "S")
