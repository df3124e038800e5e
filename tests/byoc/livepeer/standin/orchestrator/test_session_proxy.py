"""The session proxy's URL joining and header rewriting (Go's ``ReverseProxy`` with ``Rewrite``)."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from byoc.livepeer.standin.orchestrator.session_proxy import outbound_headers, proxy_target


@pytest.mark.parametrize(
    ("runner_url", "app_path", "query", "expected"),
    [
        ("http://app:8989", "echo", "", "http://app:8989/echo"),
        ("http://app:8989/", "echo", "a=1", "http://app:8989/echo?a=1"),
        ("http://app:8989/base", "live/start", "", "http://app:8989/base/live/start"),
        ("http://app:8989/base/", "", "", "http://app:8989/base"),
        ("http://app:8989", "whip/", "", "http://app:8989/whip/"),
        ("https://h:1/b", "a/../c", "", "https://h:1/b/c"),
    ],
)
def test_proxy_target_joins_the_runner_path_and_the_app_path(
    runner_url: str, app_path: str, query: str, expected: str
) -> None:
    assert proxy_target(runner_url, app_path, query) == expected


def test_outbound_headers_drop_hop_by_hop_and_forwarding_and_overwrite_session_ones() -> None:
    incoming = CIMultiDict(
        [
            ("Host", "orch:8935"),
            ("Connection", "keep-alive, X-Private"),
            ("X-Private", "hop"),
            ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"),
            ("X-Forwarded-For", "10.0.0.1"),
            ("Forwarded", "for=10.0.0.1"),
            ("livepeer-session-id", "forged"),
            ("Content-Type", "application/json"),
            ("Authorization", "Bearer client"),
        ]
    )
    out = outbound_headers(incoming, {"Livepeer-Session-Id": "session_a"})
    assert out == {
        "Content-Type": "application/json",
        "Authorization": "Bearer client",
        "Livepeer-Session-Id": "session_a",
    }
