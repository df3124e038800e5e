"""SDP checks before an offer reaches a worker, PATCH fragments and the public-IP rewrite."""

from __future__ import annotations

import pytest

from byoc.livepeer.webrtc.sdp import (
    SdpError,
    advertise_public_ip,
    check_offer,
    ice_credentials,
    parse_fragment,
)

HEAD = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"


def media(kind: str, direction: str) -> str:
    return (
        f"m={kind} 9 UDP/TLS/RTP/SAVPF 96\r\na=ice-ufrag:abcd\r\na=ice-pwd:pw\r\na={direction}\r\n"
    )


def test_a_publisher_offer_with_one_video_and_one_audio_passes() -> None:
    summary = check_offer(
        HEAD + media("video", "sendonly") + media("audio", "sendonly"), role="whip"
    )
    assert (summary.video, summary.audio) == (1, 1)


@pytest.mark.parametrize(
    ("sdp", "role", "status"),
    [
        ("", "whip", 400),
        ("hello", "whip", 400),
        (HEAD, "whip", 400),  # no media
        (HEAD + media("video", "sendonly") * 3, "whip", 422),
        (HEAD + media("audio", "sendonly") * 2, "whip", 422),
        (HEAD + media("video", "recvonly"), "whip", 422),
        (HEAD + media("video", "sendonly"), "whep", 422),
        (HEAD + media("video", "sendonly") + media("application", "sendrecv"), "whip", 422),
    ],
)
def test_bad_offers_are_refused_with_their_status(sdp: str, role: str, status: int) -> None:
    with pytest.raises(SdpError) as info:
        check_offer(sdp, role=role)
    assert info.value.status == status


def test_a_trickle_fragment_gives_credentials_and_candidates() -> None:
    frag = parse_fragment(
        "a=ice-ufrag:u1\r\na=ice-pwd:p1\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\n"
        "a=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\na=end-of-candidates\r\n"
    )
    assert (frag.ufrag, frag.pwd) == ("u1", "p1")
    assert frag.candidates == ["candidate:1 1 udp 1 127.0.0.1 5000 typ host"]
    assert frag.end_of_candidates
    with pytest.raises(SdpError):
        parse_fragment("not a fragment")
    with pytest.raises(SdpError):
        parse_fragment("")


def test_credentials_of_an_offer() -> None:
    assert ice_credentials(HEAD + media("video", "sendonly")) == ("abcd", "pw")
    assert ice_credentials(HEAD) == ("", "")


def test_the_public_ip_is_advertised_beside_each_host_candidate() -> None:
    sdp = "a=candidate:f1 1 udp 100 10.0.0.5 40001 typ host\r\na=candidate:f2 1 udp 50 1.2.3.4 9 typ srflx raddr 0.0.0.0 rport 0"
    out = advertise_public_ip(sdp, "203.0.113.7").split("\r\n")
    assert "a=candidate:f1p 1 udp 100 203.0.113.7 40001 typ host" in out
    assert len(out) == 3  # srflx candidates are left alone
    assert advertise_public_ip(sdp, "") == sdp
